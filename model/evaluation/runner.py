"""Running an evaluation: every method on every test phantom at every DRF, in one process.

Each test phantom is simulated afresh from its seed (bit-identical to the dataset cache), once
for all DRFs and methods, so DRFs never simulated for training (7, 15, 33, 75) can be scored
and the DRF estimate sees exactly the volumes the methods see. The first phantom's coronal
MIPs are written as figures, one per DRF.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from model.evaluation.drf_accuracy import DrfRecord
from model.evaluation.methods import Method
from model.evaluation.metrics import EvalCase, case_metrics
from model.evaluation.report import CaseRow, save_mip_figure
from model.evaluation.split import EvalSplit, check_unseen
from model.evaluation.tuning import VALIDATION_SEEDS
from model.simulate import SimulatedStudy, simulate_study

__all__ = [
    "DrfEstimateFn",
    "EvalResult",
    "check_split",
    "evaluate_seed",
    "load_drf_estimator",
    "merge_results",
    "run_evaluation",
]

#: ``(volume_bqml, suv_per_bqml) -> estimated DRF``, None where it cannot tell.
DrfEstimateFn = Callable[[npt.NDArray[np.float32], float], float | None]


@dataclass(frozen=True)
class EvalResult:
    """What an evaluation produced: metric rows, MIP figures and DRF estimates."""

    rows: list[CaseRow]
    figures: list[Path]
    drf_records: list[DrfRecord] = field(default_factory=list)
    drf_unestimated: int = 0  # volumes the estimator could not judge (no body voxels)


def _run_case(
    study: SimulatedStudy, drf: float, methods: Sequence[Method], case: EvalCase
) -> tuple[list[CaseRow], list[tuple[str, np.ndarray]]]:
    """Every method on one phantom at one DRF; returns the rows and the output volumes."""
    rows, outputs = [], []
    low = study.low_dose_bqml[drf]
    for method in methods:
        start = time.perf_counter()
        output = method.for_drf(drf)(low, study.spacing_mm, study.suv_per_bqml)
        seconds = time.perf_counter() - start
        rows.append(CaseRow(study.seed, drf, method.name, seconds, case_metrics(output, case)))
        outputs.append((method.name.replace("_", " "), output))
    return rows, outputs


def evaluate_seed(
    seed: int,
    first: bool,
    size: str,
    drfs: Sequence[float],
    methods: Sequence[Method],
    out: Path,
    estimate_drf: DrfEstimateFn | None = None,
) -> EvalResult:
    """Every method at every DRF on one test phantom, simulated once; ``first`` also writes
    the MIP figures (one per DRF)."""
    study = simulate_study(seed, list(drfs), size=size)  # type: ignore[arg-type]
    case = EvalCase.from_study(study)
    rows: list[CaseRow] = []
    figures: list[Path] = []
    records: list[DrfRecord] = []
    unestimated = 0
    for drf in drfs:
        case_rows, outputs = _run_case(study, drf, methods, case)
        rows.extend(case_rows)
        if estimate_drf is not None:
            estimate = estimate_drf(study.low_dose_bqml[drf], study.suv_per_bqml)
            if estimate is None:
                unestimated += 1
            else:
                records.append(DrfRecord(seed, drf, estimate))
        if first:
            panels = [*outputs, ("full dose", study.full_dose_bqml)]
            title = f"DRF {drf:g}, test seed {seed}, {size}"
            path = out / f"mip_drf{drf:g}.png"
            figures.append(
                save_mip_figure(path, panels, study.spacing_mm, study.suv_per_bqml, title)
            )
    return EvalResult(rows, figures, records, unestimated)


def merge_results(results: Iterable[EvalResult]) -> EvalResult:
    """One result from per-seed results, in the order given."""
    parts = list(results)
    return EvalResult(
        rows=[row for part in parts for row in part.rows],
        figures=[path for part in parts for path in part.figures],
        drf_records=[record for part in parts for record in part.drf_records],
        drf_unestimated=sum(part.drf_unestimated for part in parts),
    )


def check_split(split: EvalSplit, methods: Sequence[Method]) -> None:
    """Refuse test seeds seen by a split, the baselines' tuning or a network's training."""
    seen = {**split.seen_seeds, "baseline tuning": list(VALIDATION_SEEDS)}
    seen.update({f"training of {m.name}": sorted(m.train_seeds) for m in methods})
    check_unseen(split.test_seeds, seen)


def run_evaluation(
    split: EvalSplit,
    size: str,
    drfs: Sequence[float],
    methods: Sequence[Method],
    out: Path,
    n_test: int | None = None,
    estimate_drf: DrfEstimateFn | None = None,
) -> EvalResult:
    """Evaluate ``methods`` on the test seeds at every DRF; writes the MIPs of the first seed.

    ``estimate_drf``, when given, is applied to the same low-dose volumes the methods see, so
    each phantom is simulated once for both.

    Raises:
        ValueError: a test seed was seen by a split, the baselines' tuning or a network.
    """
    check_split(split, methods)
    seeds = split.test_seeds[:n_test] if n_test else split.test_seeds
    return merge_results(
        evaluate_seed(seed, index == 0, size, drfs, methods, out, estimate_drf)
        for index, seed in enumerate(seeds)
    )


def load_drf_estimator(path: Path, threads: int) -> DrfEstimateFn | None:
    """The calibrated estimate of a weights file, or None when it carries no calibration.

    Raises:
        model.errors.WeightsError: the weights file cannot be loaded.
    """
    from model.inference import load_denoiser

    denoiser = load_denoiser(path, threads=threads, device="cpu")
    if denoiser.drf_calibration is None:
        return None
    return denoiser.estimate_drf
