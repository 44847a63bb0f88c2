"""Benchmark of the classical baselines: time of each on one low-dose volume (DRF 20).

    python benchmarks/bench_nlm_vs_gaussian.py --size tiny     # CI: a few seconds
    python benchmarks/bench_nlm_vs_gaussian.py --size full     # clinical matrix

Prints the volume shape, the seconds of each baseline (best of ``--repeat``) and its ratio to
the fixed Gaussian post-filter measured in the same run, plus PSNR against full dose so a
faster setting that loses quality shows up. BM4D is timed only if its optional package is
installed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

from model.baselines import (
    bm4d_available,
    bm4d_denoise,
    gaussian_postfilter,
    nlm_denoise,
    tuned_gaussian,
)
from model.evaluation.methods import GAUSSIAN_FWHM_MM
from model.evaluation.metrics import clipped_suv, psnr_suv
from model.simulate import simulate_study

DRF = 20.0


def best_time(
    fn: Callable[[], npt.NDArray[np.float32]], repeat: int
) -> tuple[float, npt.NDArray[np.float32]]:
    """Fastest of ``repeat`` calls, and the last output."""
    best = float("inf")
    out: npt.NDArray[np.float32] = np.empty(0, dtype=np.float32)
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    """Simulate one phantom and time each baseline on its DRF 20 volume."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=["tiny", "small", "full"], default="tiny")
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)

    study = simulate_study(seed=args.seed, drfs=[DRF], size=args.size)
    low, spacing, spv = study.low_dose_bqml[DRF], study.spacing_mm, study.suv_per_bqml
    full = clipped_suv(study.full_dose_bqml, spv)
    print(f"{args.size} volume {low.shape}, spacing {spacing} mm, DRF {DRF:g}")
    runs: dict[str, Callable[[], npt.NDArray[np.float32]]] = {
        "gaussian": lambda: gaussian_postfilter(low, spacing, GAUSSIAN_FWHM_MM),
        "tuned_gaussian": lambda: tuned_gaussian(low, spacing, DRF),
        "nlm": lambda: nlm_denoise(low, spacing, spv),
    }
    if bm4d_available():
        runs["bm4d"] = lambda: bm4d_denoise(low, spacing, spv)
    else:
        print("bm4d: not installed (optional, non-commercial licence), skipped")
    print(f"{'method':>15} {'seconds':>8} {'x gaussian':>10} {'PSNR dB':>8}")
    print(f"{'low dose':>15} {'':>8} {'':>10} {psnr_suv(clipped_suv(low, spv), full):8.2f}")
    reference = None
    for name, run in runs.items():
        seconds, out = best_time(run, args.repeat)
        reference = reference or seconds
        psnr = psnr_suv(clipped_suv(out, spv), full)
        print(f"{name:>15} {seconds:8.3f} {seconds / reference:10.1f} {psnr:8.2f}")


if __name__ == "__main__":
    main()
