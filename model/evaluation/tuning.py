"""Command line: choose the baselines' free parameters on validation phantoms, never on test.

    python -m model.evaluation.tuning [--seeds 2000 2001] [--size small]

Prints, for each training DRF, the mean PSNR (vs full dose, clipped SUV as in the evaluation)
of the Gaussian post-filter over an FWHM grid and the best FWHM, then the same for the NLM h
factor pooled over all DRFs (one factor, since the noise estimate already scales with dose).
The chosen values are copied into ``model.baselines`` (``TUNED_GAUSSIAN_FWHM_MM``,
``NLM_H_FACTOR``): baselines stay fixed functions, and a rerun shows where they came from.
``VALIDATION_SEEDS`` are outside every training and test split the project uses, and the
evaluation refuses them as test seeds.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch

from model.baselines import gaussian_postfilter, nlm_denoise
from model.evaluation.metrics import clipped_suv, psnr_suv
from model.simulate import SimulatedStudy, simulate_study
from model.simulate.build_dataset import TRAINING_DRFS

__all__ = ["FWHM_GRID_MM", "H_FACTOR_GRID", "VALIDATION_SEEDS", "main", "tune_gaussian", "tune_nlm"]

VALIDATION_SEEDS = (2000, 2001)
FWHM_GRID_MM = (4.0, 6.0, 8.0, 10.0, 12.0, 14.0)
H_FACTOR_GRID = (0.8, 1.0, 1.3, 1.6, 2.0)


def _psnr(study: SimulatedStudy, output_bqml: np.ndarray) -> float:
    """PSNR of an output against the study's full dose, as the evaluation computes it."""
    return psnr_suv(
        clipped_suv(output_bqml, study.suv_per_bqml),
        clipped_suv(study.full_dose_bqml, study.suv_per_bqml),
    )


def tune_gaussian(
    studies: Sequence[SimulatedStudy], drfs: Sequence[float], grid: Sequence[float] = FWHM_GRID_MM
) -> dict[float, dict[float, float]]:
    """Mean PSNR over ``studies`` of each FWHM in ``grid`` at each DRF: {drf: {fwhm: dB}}."""
    return {
        drf: {
            fwhm: float(
                np.mean(
                    [
                        _psnr(s, gaussian_postfilter(s.low_dose_bqml[drf], s.spacing_mm, fwhm))
                        for s in studies
                    ]
                )
            )
            for fwhm in grid
        }
        for drf in drfs
    }


def tune_nlm(
    studies: Sequence[SimulatedStudy],
    drfs: Sequence[float],
    grid: Sequence[float] = H_FACTOR_GRID,
) -> dict[float, dict[float, float]]:
    """Mean PSNR over ``studies`` of each NLM h factor at each DRF: {drf: {h_factor: dB}}."""
    return {
        drf: {
            h: float(
                np.mean(
                    [
                        _psnr(s, nlm_denoise(s.low_dose_bqml[drf], s.spacing_mm, s.suv_per_bqml, h))
                        for s in studies
                    ]
                )
            )
            for h in grid
        }
        for drf in drfs
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Simulate the validation phantoms, print both grids and the chosen parameters."""
    p = argparse.ArgumentParser(
        prog="python -m model.evaluation.tuning",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seeds", type=int, nargs="+", default=list(VALIDATION_SEEDS))
    p.add_argument("--size", choices=["tiny", "small", "full"], default="small")
    p.add_argument("--drfs", type=float, nargs="+", default=list(TRAINING_DRFS))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    studies = [simulate_study(seed, args.drfs, size=args.size) for seed in args.seeds]
    for label, scores in (
        ("Gaussian FWHM mm", tune_gaussian(studies, args.drfs)),
        ("NLM h factor", tune_nlm(studies, args.drfs)),
    ):
        keys = list(next(iter(scores.values())))
        print(f"{label:>18}: " + " ".join(f"{k:>7g}" for k in keys) + "   best")
        for drf, row in scores.items():
            best = max(row, key=lambda k: row[k])
            print(
                f"{'DRF ' + format(drf, 'g'):>18}: "
                + " ".join(f"{row[k]:7.2f}" for k in keys)
                + f"   {best:g}"
            )
        pooled = {k: float(np.mean([row[k] for row in scores.values()])) for k in keys}
        print(
            f"{'pooled mean':>18}: "
            + " ".join(f"{pooled[k]:7.2f}" for k in keys)
            + f"   {max(pooled, key=lambda k: pooled[k]):g}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
