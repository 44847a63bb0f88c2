"""The full-dose-in check: a full-dose input must come back almost unchanged.

A node cannot always know the dose of what it is sent, so a full-dose series will be
denoised too. It must not lose quantitation (the hottest lesion's SUVmax, what a report
quotes), must not be smoothed past full-dose texture (liver CoV), and its DRF estimate must
say "full dose". At DRF 1 the input is the full-dose image itself, so the figures of the DRF-1
rows against full dose are figures against the input. Each is summarised by its worst
phantom, because the check is a promise about every series, not about the average one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from model.evaluation.drf_accuracy import DrfRecord
from model.evaluation.lesion_tables import cell
from model.evaluation.tables import CaseRow

__all__ = ["FULL_DOSE_DRF", "FullDoseInput", "FullDoseRow", "full_dose_input", "full_dose_markdown"]

FULL_DOSE_DRF = 1.0


@dataclass(frozen=True)
class FullDoseRow:
    """One method on full-dose inputs; each figure is that of its worst phantom."""

    method: str
    n_phantoms: int
    hottest_lesion_max_bias_pct: float | None  # largest |SUVmax change| of the hottest lesion
    liver_cov_ratio: float | None  # lowest output/input liver CoV


@dataclass(frozen=True)
class FullDoseInput:
    """The check over the test phantoms; ``drf_estimate`` is the highest estimate of an input."""

    n_phantoms: int
    drf_estimate: float | None
    methods: tuple[FullDoseRow, ...]

    def to_json(self) -> dict[str, object]:
        """The ``full_dose_input`` object of ``results.json`` and the model card."""
        return dataclasses.asdict(self)

    def row(self, method: str) -> FullDoseRow | None:
        """The row of ``method``, if it was evaluated."""
        return next((r for r in self.methods if r.method == method), None)


def _finite(values: Sequence[float]) -> list[float]:
    """The finite values."""
    return [v for v in values if math.isfinite(v)]


def full_dose_input(
    rows: Sequence[CaseRow], records: Sequence[DrfRecord], methods: Sequence[str]
) -> FullDoseInput | None:
    """The check from the DRF-1 rows and DRF estimates; None when DRF 1 was not evaluated."""
    at_one = [r for r in rows if r.drf == FULL_DOSE_DRF]
    if not at_one:
        return None
    table = []
    for method in methods:
        sel = [r for r in at_one if r.method == method]
        if not sel:
            continue
        biases = _finite([r.metrics.hottest_lesion_max_bias_pct for r in sel])
        ratios = _finite([r.metrics.liver_cov_ratio for r in sel])
        table.append(
            FullDoseRow(
                method=method,
                n_phantoms=len(sel),
                hottest_lesion_max_bias_pct=max(biases, key=abs) if biases else None,
                liver_cov_ratio=min(ratios) if ratios else None,
            )
        )
    estimates = [r.estimate for r in records if r.drf == FULL_DOSE_DRF]
    return FullDoseInput(
        n_phantoms=len({r.seed for r in at_one}),
        drf_estimate=max(estimates) if estimates else None,
        methods=tuple(table),
    )


def full_dose_markdown(check: FullDoseInput) -> list[str]:
    """The check as markdown: one row per method, worst phantom each."""
    estimate = cell(check.drf_estimate, "{:.2f}")
    lines = [
        "## Full-dose input (DRF 1)",
        "",
        f"Worst of {check.n_phantoms} test phantoms. Highest DRF estimate of a full-dose "
        f"input: {estimate}.",
        "",
        "| method | hottest-lesion SUVmax change % | liver CoV / input CoV |",
        "|---|---|---|",
    ]
    for row in check.methods:
        bias = cell(row.hottest_lesion_max_bias_pct, "{:+.2f}")
        lines.append(f"| {row.method} | {bias} | {cell(row.liver_cov_ratio, '{:.2f}')} |")
    return lines
