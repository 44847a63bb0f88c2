"""Per-DRF tables of an evaluation: one row per method, figures over the test phantoms.

Whole-image and liver figures are means over phantoms of the per-phantom figures of
``model.evaluation.metrics`` (lesion columns of those skip phantoms without a measurable
lesion); lesion figures pooled over all lesions are medians
(``model.evaluation.lesion_tables``). Tables are made from the per-phantom rows, so the same
function makes the overall tables and those of a group of phantoms (``groups``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.evaluation.lesion_tables import pooled_lesion_figures
from model.evaluation.metrics import CaseMetrics, LesionRecord

__all__ = ["CASE_FIGURES", "COLUMNS", "CaseRow", "TableRow", "mean_table"]

# (field of CaseMetrics, column header, format)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("psnr_db", "PSNR dB", "{:.2f}"),
    ("nrmse", "NRMSE", "{:.4f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("liver_bias_pct", "liver bias % (vs FD)", "{:+.2f}"),
    ("liver_cov_ratio", "liver CoV ratio", "{:.2f}"),
    ("lesion_max_bias_pct", "lesion SUVmax bias % (vs FD)", "{:+.1f}"),
    ("lesion_mean_bias_pct", "lesion SUVmean bias % (vs FD)", "{:+.1f}"),
    ("lesion_mean_bias_truth_pct", "lesion SUVmean bias % (vs truth)", "{:+.1f}"),
    ("lesion_crc", "lesion CRC", "{:.2f}"),
)
# Further per-phantom figures whose means the tables hold (shown in the lesion tables).
CASE_FIGURES = ("false_hot_spots",)


@dataclass(frozen=True)
class CaseRow:
    """One method on one phantom at one DRF, with its lesions and where the phantom came from.

    ``scanner`` is the phantom's scanner profile; ``held_out_scanner`` whether that profile
    was held out of training; ``fwhm_mm`` the FWHM of a matched Gaussian's row.
    """

    seed: int
    drf: float
    method: str
    seconds: float
    metrics: CaseMetrics
    lesions: tuple[LesionRecord, ...] = ()
    dataset: str | None = None
    scanner: str | None = None
    held_out_scanner: bool | None = None
    fwhm_mm: float | None = None


@dataclass(frozen=True)
class TableRow:
    """Mean figures of one method at one DRF over the test phantoms."""

    method: str
    n_phantoms: int
    seconds: float
    means: dict[str, float]


def _mean(values: Sequence[float]) -> float:
    """Mean of the finite values; inf if all are +inf (exact matches); NaN if none is usable."""
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        return float(np.mean(finite))
    if values and all(v == math.inf for v in values):
        return math.inf
    return math.nan


def mean_table(rows: Sequence[CaseRow], drf: float, methods: Sequence[str]) -> list[TableRow]:
    """One row per method (in ``methods`` order) of the figures over phantoms at ``drf``."""
    table = []
    for method in methods:
        sel = [r for r in rows if r.drf == drf and r.method == method]
        if not sel:
            continue
        keys = [*(key for key, _, _ in COLUMNS), *CASE_FIGURES]
        means = {key: _mean([float(getattr(r.metrics, key)) for r in sel]) for key in keys}
        means.update(pooled_lesion_figures([lesion for r in sel for lesion in r.lesions]))
        fwhm = [r.fwhm_mm for r in sel if r.fwhm_mm is not None]
        if fwhm:
            means["matched_fwhm_mm"] = float(np.mean(fwhm))
        seconds = float(np.mean([r.seconds for r in sel]))
        table.append(TableRow(method, len(sel), seconds, means))
    return table
