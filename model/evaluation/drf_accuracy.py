"""Accuracy of the calibrated DRF estimate on held-out test phantoms: summary, table, JSON.

The node records the estimated DRF of every input it denoises, so a reader of the model card
must know how far off it can be, both at the DRFs the calibration was fitted on and at DRFs
it never saw. The error of one estimate is the factor ``max(est / true, true / est)``: a DRF
is a ratio of doses, so halving and doubling are the same size of mistake.

Clinical phantoms are simulated with a patient-to-patient spread of full-dose noise (10 % on
the liver CoV: uptake, glucose, bed overlap), which nothing in the image or the headers
shows. A phantom drawn noisier by a factor f looks like a DRF f**2 higher, so the report
also states the floor that spread sets (the error of an estimate exact but for it) and the
estimate's error with it taken out (:func:`patient_spread`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "BAND_FACTOR",
    "DrfOverall",
    "DrfRecord",
    "DrfSummary",
    "PatientSpread",
    "drf_document",
    "drf_markdown",
    "factor_error",
    "overall_accuracy",
    "patient_spread",
    "percentile_factor_error",
    "spread_sentence",
    "summarise_by_drf",
    "write_drf_report",
]

BAND_FACTOR = 1.5  # an estimate within this factor of the truth counts as right
JSON_NAME = "drf_estimate.json"


@dataclass(frozen=True)
class DrfRecord:
    """The estimated DRF of one test phantom's low-dose volume at one true DRF."""

    seed: int
    drf: float
    estimate: float
    patient_cov_factor: float | None = None  # drawn for the simulated phantom, if any


@dataclass(frozen=True)
class DrfSummary:
    """Estimates at one true DRF over the test phantoms."""

    drf: float
    training: bool
    n: int
    median_estimate: float
    median_factor_error: float
    fraction_within_band: float


@dataclass(frozen=True)
class DrfOverall:
    """Estimates over every phantom and DRF together."""

    n: int
    median_factor_error: float
    fraction_within_band: float


@dataclass(frozen=True)
class PatientSpread:
    """What the simulation's patient-to-patient noise spread costs the estimate."""

    n: int
    floor_median_factor_error: float  # an estimate exact but for the drawn factor
    median_factor_error_without_spread: float  # this estimate, drawn factor taken out


def factor_error(estimate: float, true: float) -> float:
    """``max(estimate / true, true / estimate)``: 1 is exact, 2 is off by a factor of two.

    Raises:
        ValueError: either value is not positive.
    """
    if not (estimate > 0 and true > 0):
        raise ValueError(f"DRFs must be positive, got estimate={estimate}, true={true}")
    return max(estimate / true, true / estimate)


def _errors(records: Sequence[DrfRecord]) -> np.ndarray:
    """Factor errors of the records, in order."""
    return np.asarray([factor_error(r.estimate, r.drf) for r in records], dtype=np.float64)


def summarise_by_drf(
    records: Sequence[DrfRecord], training_drfs: Sequence[float]
) -> list[DrfSummary]:
    """One summary per true DRF, in the order the DRFs first appear in ``records``."""
    training = {float(d) for d in training_drfs}
    summaries = []
    for drf in dict.fromkeys(r.drf for r in records):
        sel = [r for r in records if r.drf == drf]
        errors = _errors(sel)
        summaries.append(
            DrfSummary(
                drf=drf,
                training=float(drf) in training,
                n=len(sel),
                median_estimate=float(np.median([r.estimate for r in sel])),
                median_factor_error=float(np.median(errors)),
                fraction_within_band=float(np.mean(errors <= BAND_FACTOR)),
            )
        )
    return summaries


def overall_accuracy(records: Sequence[DrfRecord]) -> DrfOverall:
    """Median factor error and in-band fraction over all records.

    Raises:
        ValueError: no records.
    """
    if not records:
        raise ValueError("no DRF estimates to summarise")
    errors = _errors(records)
    return DrfOverall(
        n=len(records),
        median_factor_error=float(np.median(errors)),
        fraction_within_band=float(np.mean(errors <= BAND_FACTOR)),
    )


def patient_spread(records: Sequence[DrfRecord]) -> PatientSpread | None:
    """The floor of the patient spread and the error without it; None unless every record
    carries its phantom's drawn factor.

    A factor f on the CoV is f**2 on the counts a standard acquisition gave, so an
    estimate exact but for it reads ``drf * f**2``, and ``estimate / f**2`` is the estimate
    with the spread taken out.
    """
    factors = [r.patient_cov_factor for r in records]
    if not records or any(f is None or f <= 0 for f in factors):
        return None
    squares = [float(f) ** 2 for f in factors if f is not None]
    floor = [max(q, 1.0 / q) for q in squares]
    without = [factor_error(r.estimate / q, r.drf) for r, q in zip(records, squares, strict=True)]
    return PatientSpread(
        n=len(records),
        floor_median_factor_error=float(np.median(floor)),
        median_factor_error_without_spread=float(np.median(without)),
    )


def spread_sentence(spread: PatientSpread) -> str:
    """One markdown sentence stating the floor and the error without the spread."""
    return (
        "The simulation draws each patient's full-dose liver CoV with a 10 % spread that no "
        "image statistic sees: an estimate exact but for it would have a median factor "
        f"error of {spread.floor_median_factor_error:.2f} on these {spread.n} cases; this "
        "estimate with the drawn spread taken out has "
        f"{spread.median_factor_error_without_spread:.2f}."
    )


def percentile_factor_error(records: Sequence[DrfRecord], percent: float = 90.0) -> float:
    """The factor error that ``percent`` % of the estimates stay within (linear interpolation).

    The 1.1 target asks for 90 % within a factor 1.5, i.e. this at 90 % not above 1.5.

    Raises:
        ValueError: no records.
    """
    if not records:
        raise ValueError("no DRF estimates to summarise")
    return float(np.percentile(_errors(records), percent))


def drf_markdown(
    summaries: Sequence[DrfSummary],
    overall: DrfOverall,
    weights_name: str,
    p90_factor_error: float | None = None,
    spread: PatientSpread | None = None,
) -> str:
    """A markdown table of the per-DRF summaries, a closing overall line and, for simulated
    phantoms with a drawn patient spread, its floor."""
    lines = [
        f"### DRF estimate of the low-dose input ({weights_name})",
        "",
        "Factor error = max(estimate / true, true / estimate); medians over test phantoms.",
        "",
        "| true DRF | DRF kind | n | median estimate | median factor error "
        f"| within x{BAND_FACTOR:g} |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        kind = "training" if s.training else "unseen"
        lines.append(
            f"| {s.drf:g} | {kind} | {s.n} | {s.median_estimate:.1f} "
            f"| {s.median_factor_error:.2f} | {s.fraction_within_band:.0%} |"
        )
    lines += [
        "",
        f"Overall: median factor error {overall.median_factor_error:.2f} over {overall.n} "
        f"cases, {overall.fraction_within_band:.0%} within x{BAND_FACTOR:g}."
        + (
            f" 90th percentile factor error {p90_factor_error:.2f}."
            if p90_factor_error is not None
            else ""
        ),
    ]
    if spread is not None:
        lines += ["", spread_sentence(spread)]
    return "\n".join(lines) + "\n"


def drf_document(
    records: Sequence[DrfRecord], training_drfs: Sequence[float], meta: Mapping[str, object]
) -> dict[str, object]:
    """The JSON document: ``meta``, the band, overall figures, per-DRF summaries, the patient
    spread's floor (when the phantoms drew one) and records."""
    spread = patient_spread(records)
    return {
        **meta,
        "band_factor": BAND_FACTOR,
        "overall": dataclasses.asdict(overall_accuracy(records)),
        "per_drf": [dataclasses.asdict(s) for s in summarise_by_drf(records, training_drfs)],
        **({"patient_spread": dataclasses.asdict(spread)} if spread else {}),
        "records": [dataclasses.asdict(r) for r in records],
    }


def write_drf_report(
    out: Path,
    records: Sequence[DrfRecord],
    training_drfs: Sequence[float],
    weights_name: str,
    meta: Mapping[str, object],
) -> tuple[Path, str]:
    """Write ``drf_estimate.json`` into ``out`` and append the table to ``results.md``.

    Returns:
        The JSON path and the markdown table.

    Raises:
        ValueError: no records.
    """
    document = drf_document(records, training_drfs, {"weights": weights_name, **meta})
    markdown = drf_markdown(
        summarise_by_drf(records, training_drfs),
        overall_accuracy(records),
        weights_name,
        percentile_factor_error(records),
        patient_spread(records),
    )
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_NAME
    json_path.write_text(json.dumps(document, indent=1, allow_nan=False))
    with (out / "results.md").open("a") as md:
        md.write("\n" + markdown)
    return json_path, markdown
