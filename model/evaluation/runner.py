"""Running an evaluation: every method on every test phantom at every DRF, in one process.

Each test phantom is simulated afresh from its seed (bit-identical to the dataset cache, plus
its noise-free reconstruction) or, for sizes too slow to simulate again, read from its
dataset file (``model.evaluation.split``);
either way once for all DRFs and methods, so the DRF estimate sees exactly the volumes the
methods see. Besides the methods' outputs, every phantom scores its references (full dose,
and the noise-free reconstruction when it has one) as rows of their own, and every network's
output (or those named) gets a Gaussian matched to its liver noise
(``model.evaluation.matched``). The first
phantom's coronal MIPs are written as figures, one per DRF.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from model.evaluation.drf_accuracy import DrfRecord
from model.evaluation.matched import match_gaussian
from model.evaluation.methods import FULL_DOSE, NOISE_FREE, Method, matched_name
from model.evaluation.metrics import (
    CaseMetrics,
    EvalCase,
    LesionRecord,
    PreparedCase,
    prepare_case,
    score,
)
from model.evaluation.report import save_mip_figure
from model.evaluation.reuse import ReusedRows
from model.evaluation.split import EvalPhantom, EvalSplit, check_unseen
from model.evaluation.tables import CaseRow
from model.evaluation.tuning import VALIDATION_SEEDS
from model.simulate import SimulatedStudy, simulate_study
from model.simulate.acquisition import drawn_patient_cov_factor
from model.simulate.dataset import load_study
from model.simulate.metrics import region_cov

__all__ = [
    "DrfEstimateFn",
    "EvalResult",
    "Matched",
    "check_split",
    "evaluate_phantom",
    "load_drf_estimator",
    "load_phantom",
    "merge_results",
    "phantoms_to_score",
    "run_evaluation",
]

#: ``(volume_bqml, suv_per_bqml, spacing_mm) -> estimated DRF``, None where it cannot tell.
#: (volume in Bq/ml, SUV per Bq/ml, spacing (z, y, x) mm, patient weight kg) -> DRF or None.
DrfEstimateFn = Callable[
    [npt.NDArray[np.float32], float, tuple[float, float, float], float | None], float | None
]
FloatVolume = npt.NDArray[np.float32]
#: Networks that get a matched Gaussian, by name; None: every network.
Matched = frozenset[str] | None


@dataclass(frozen=True)
class EvalResult:
    """What an evaluation produced: metric rows, MIP figures and DRF estimates."""

    rows: list[CaseRow]
    figures: list[Path]
    drf_records: list[DrfRecord] = field(default_factory=list)
    drf_unestimated: int = 0  # volumes the estimator could not judge (no body voxels)


@dataclass(frozen=True)
class _Origin:
    """Where a phantom's rows come from (the labels every row of it carries)."""

    seed: int
    dataset: str | None
    scanner: str
    held_out_scanner: bool

    def row(
        self,
        drf: float,
        method: str,
        seconds: float,
        scored: tuple[CaseMetrics, tuple[LesionRecord, ...]],
        fwhm_mm: float | None = None,
    ) -> CaseRow:
        """A row of this phantom."""
        metrics, lesions = scored
        return CaseRow(
            self.seed,
            drf,
            method,
            seconds,
            metrics,
            lesions,
            self.dataset,
            self.scanner,
            self.held_out_scanner,
            fwhm_mm,
        )


def load_phantom(phantom: EvalPhantom, drfs: Sequence[float]) -> SimulatedStudy:
    """The phantom's study at ``drfs``, with its noise-free reconstruction where one exists
    (always for a simulated phantom; for a cached one if its dataset was built with it).

    Raises:
        ValueError: a cached file lacks one of ``drfs``.
    """
    if phantom.path is None:
        # The size is text from a manifest or the command line; simulate_study checks it.
        size: Any = phantom.size
        return simulate_study(phantom.seed, list(drfs), size=size, noise_free=True)
    study = load_study(phantom.path)
    missing = [d for d in drfs if d not in study.low_dose_bqml]
    if missing:
        raise ValueError(f"{phantom.path} holds no image at DRF {missing}")
    return study


def _reference_rows(
    prepared: PreparedCase, drfs: Sequence[float], origin: _Origin
) -> list[CaseRow]:
    """The full-dose (and noise-free) image scored like an output, one row per DRF."""
    case = prepared.case
    rows = []
    for name, image in ((FULL_DOSE, case.full_dose_bqml), (NOISE_FREE, case.noise_free_bqml)):
        if image is not None:
            scored = score(image, prepared)
            rows += [origin.row(drf, name, 0.0, scored) for drf in drfs]
    return rows


def _matched_row(
    low: FloatVolume,
    output: FloatVolume,
    prepared: PreparedCase,
    drf: float,
    network: str,
    origin: _Origin,
) -> CaseRow | None:
    """The Gaussian of ``low`` matched to ``output``'s liver CoV, scored; None without liver."""
    liver = prepared.liver
    target = region_cov(np.asarray(output, dtype=np.float32), liver) if liver.any() else 0.0
    if not target > 0:
        return None
    start = time.perf_counter()
    matched = match_gaussian(low, prepared.case.spacing_mm, liver, target)
    seconds = time.perf_counter() - start
    scored = score(matched.volume, prepared)
    return origin.row(drf, matched_name(network), seconds, scored, matched.fwhm_mm)


def _run_case(
    low: FloatVolume,
    drf: float,
    methods: Sequence[Method],
    prepared: PreparedCase,
    origin: _Origin,
    match: Matched,
    reuse: ReusedRows,
) -> tuple[list[CaseRow], list[tuple[str, FloatVolume]]]:
    """Every method on one phantom at one DRF; returns the rows and the output volumes.

    A method with rows in ``reuse`` for this phantom and DRF is not run: its earlier rows are
    taken, and it has no output volume.
    """
    rows, outputs = [], []
    case = prepared.case
    for method in methods:
        earlier = reuse.take(origin.dataset, origin.seed, drf, method.name)
        if earlier:
            rows += earlier
            continue
        start = time.perf_counter()
        output = method.for_drf(drf)(low, case.spacing_mm, case.suv_per_bqml)
        seconds = time.perf_counter() - start
        rows.append(origin.row(drf, method.name, seconds, score(output, prepared)))
        outputs.append((method.name.replace("_", " "), output))
        if method.network and (match is None or method.name in match):
            matched = _matched_row(low, output, prepared, drf, method.name, origin)
            rows += [matched] if matched is not None else []
    return rows, outputs


def evaluate_phantom(
    phantom: EvalPhantom,
    first: bool,
    drfs: Sequence[float],
    methods: Sequence[Method],
    out: Path,
    estimate_drf: DrfEstimateFn | None = None,
    match: Matched = None,
    reuse: ReusedRows | None = None,
) -> EvalResult:
    """Every method at every DRF on one test phantom, loaded once; ``first`` also writes the
    MIP figures (one per DRF) and so reuses nothing. Networks named in ``match`` (None: every
    network) get their matched Gaussian. Rows in ``reuse`` are taken, not computed."""
    study = load_phantom(phantom, drfs)
    prepared = prepare_case(EvalCase.from_study(study))
    origin = _Origin(study.seed, phantom.dataset, study.scanner.name, phantom.held_out_scanner)
    rows: list[CaseRow] = []
    figures: list[Path] = []
    records: list[DrfRecord] = []
    unestimated = 0
    spread_factor = drawn_patient_cov_factor(study.scanner, study.seed)
    for drf in drfs:
        low = study.low_dose_bqml[drf]
        taken = ReusedRows() if first or reuse is None else reuse
        case_rows, outputs = _run_case(low, drf, methods, prepared, origin, match, taken)
        rows.extend(case_rows)
        if estimate_drf is not None:
            estimate = estimate_drf(
                low, study.suv_per_bqml, study.spacing_mm, study.tracer.patient_weight_kg
            )
            if estimate is None:
                unestimated += 1
            else:
                records.append(DrfRecord(study.seed, drf, estimate, spread_factor))
        if first:
            panels = [*outputs, ("full dose", study.full_dose_bqml)]
            if study.noise_free_bqml is not None:
                panels.append(("noise-free", study.noise_free_bqml))
            where = phantom.dataset or study.size
            title = f"DRF {drf:g}, test seed {study.seed}, {where}"
            path = out / f"mip_drf{drf:g}.png"
            figures.append(
                save_mip_figure(path, panels, study.spacing_mm, study.suv_per_bqml, title)
            )
    rows.extend(_reference_rows(prepared, drfs, origin))
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


def phantoms_to_score(split: EvalSplit, size: str, n_test: int | None = None) -> list[EvalPhantom]:
    """The split's phantoms (its seeds simulated at ``size`` when it names none), first N."""
    phantoms = list(split.phantoms) or [EvalPhantom(seed, size) for seed in split.test_seeds]
    return phantoms[:n_test] if n_test else phantoms


def run_evaluation(
    split: EvalSplit,
    size: str,
    drfs: Sequence[float],
    methods: Sequence[Method],
    out: Path,
    n_test: int | None = None,
    estimate_drf: DrfEstimateFn | None = None,
    match: Matched = None,
    reuse: ReusedRows | None = None,
) -> EvalResult:
    """Evaluate ``methods`` on the test phantoms at every DRF; writes the MIPs of the first.
    Rows in ``reuse`` are taken instead of computed (``model.evaluation.reuse``).

    ``estimate_drf``, when given, is applied to the same low-dose volumes the methods see, so
    each phantom is loaded once for both.

    Raises:
        ValueError: a test seed was seen by a split, the baselines' tuning or a network; or
            a cached file lacks one of ``drfs``.
    """
    check_split(split, methods)
    return merge_results(
        evaluate_phantom(phantom, index == 0, drfs, methods, out, estimate_drf, match, reuse)
        for index, phantom in enumerate(phantoms_to_score(split, size, n_test))
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
