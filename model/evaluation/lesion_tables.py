"""Lesion figures pooled over every lesion of the test phantoms, and their markdown tables.

A test set holds a few lesions per phantom, and small ones are the ones a denoiser can spoil,
so lesion figures are medians over all lesions of all phantoms at one (method, DRF), not
means of per-phantom medians (which would weigh a phantom's single lesion like another's
five). The tables here are shared by ``results.md`` and the model card, which render rows of
either source: anything with a ``method`` and a ``means`` mapping (:class:`MeansRow`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np

from model.evaluation.metrics import LesionRecord
from model.evaluation.nema import SIZE_BINS, size_bin

__all__ = [
    "LESION_COLUMNS",
    "LESION_NOTE",
    "NEMA_COLUMNS",
    "Column",
    "MeansRow",
    "cell",
    "grid_lines",
    "has_columns",
    "lesion_markdown",
    "markdown_table",
    "pooled_lesion_figures",
]

# (key of the table means, column header, format)
Column = tuple[str, str, str]

# (key, per-lesion field) of the pooled bias medians
_BIASES: tuple[tuple[str, str], ...] = (
    ("lesion_peak_bias_nf_pct", "peak_bias_nf_pct"),
    ("lesion_peak_bias_fd_pct", "peak_bias_fd_pct"),
    ("lesion_max_bias_nf_pct", "max_bias_nf_pct"),
    ("lesion_max_bias_fd_pct", "max_bias_fd_pct"),
)

LESION_COLUMNS: tuple[Column, ...] = (
    ("lesion_peak_bias_nf_pct", "SUVpeak bias % (vs NF)", "{:+.1f}"),
    ("lesion_peak_bias_fd_pct", "SUVpeak bias % (vs FD)", "{:+.1f}"),
    ("lesion_max_bias_nf_pct", "SUVmax bias % (vs NF)", "{:+.1f}"),
    ("lesion_max_bias_fd_pct", "SUVmax bias % (vs FD)", "{:+.1f}"),
    ("cr_10_13", "CR 10-13 mm", "{:.2f}"),
    ("bv_10_13", "BV 10-13 mm", "{:.3f}"),
    ("false_hot_spots", "false hot spots / volume", "{:.2f}"),
    ("matched_fwhm_mm", "matched FWHM mm", "{:.1f}"),
    ("n_lesions_pooled", "lesions", "{:.0f}"),
)

LESION_NOTE = (
    "Lesion tables: medians over all lesions of the test phantoms. SUVpeak = highest mean SUV "
    "in a 1 cm3 sphere centred in the lesion (PERCIST); bias vs the noise-free reconstruction "
    "(NF: OSEM of noiseless data, same scanner settings) and vs the full dose (FD). CR = NEMA "
    "NU 2 hot contrast recovery vs truth: lesion mean over the mean of a shell 10-20 mm past "
    "the lesion in its organ; BV = SD/mean of the means of up to 60 spheres of the lesion's "
    "size in its organ (or the liver) off lesions. False hot spots = local maxima (3x3x3) "
    "above 3x the image's liver SUVmean, off true lesions and truly hot tissue, per volume. "
    "gaussian_matched_<net>: the input filtered with the Gaussian whose liver CoV matches "
    "<net>'s output, per phantom and DRF (its mean FWHM in the last column)."
)

NEMA_COLUMNS: tuple[Column, ...] = tuple(
    column
    for b in SIZE_BINS
    for column in (
        (f"cr_{b.key}", f"CR {b.label}", "{:.2f}"),
        (f"bv_{b.key}", f"BV {b.label}", "{:.3f}"),
    )
)


class MeansRow(Protocol):
    """A table row: a method and its figures (None or NaN: not measured)."""

    @property
    def method(self) -> str: ...

    @property
    def means(self) -> Mapping[str, float | None]: ...


def _median(values: Iterable[float]) -> float:
    """Median of the finite values; NaN when there is none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.median(finite)) if finite else math.nan


def pooled_lesion_figures(lesions: Sequence[LesionRecord]) -> dict[str, float]:
    """Medians over ``lesions`` of the biases, and CR and BV per size bin (NaN when empty)."""
    figures = {key: _median(getattr(r, name) for r in lesions) for key, name in _BIASES}
    for b in SIZE_BINS:
        held = [r for r in lesions if size_bin(r.diameter_mm) == b]
        figures[f"cr_{b.key}"] = _median(r.contrast_recovery for r in held)
        figures[f"bv_{b.key}"] = _median(r.background_variability for r in held)
    figures["n_lesions_pooled"] = float(len(lesions))
    return figures


def cell(value: float | None, fmt: str) -> str:
    """A formatted cell: ``n/a`` for None or NaN, ``inf`` for an infinite figure."""
    if value is None or math.isnan(value):
        return "n/a"
    return "inf" if math.isinf(value) else fmt.format(value)


def has_columns(rows: Iterable[MeansRow], columns: Sequence[Column]) -> bool:
    """Whether any row holds a measured figure of ``columns`` (else the table is left out)."""
    return any(
        (value := row.means.get(key)) is not None and not math.isnan(value)
        for row in rows
        for key, _, _ in columns
    )


def grid_lines(head: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Markdown lines of a table of ready-made cells: the head, its rule, then the rows."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown_table(rows: Sequence[MeansRow], columns: Sequence[Column]) -> list[str]:
    """Markdown lines of a table: a row per method, a column per figure."""
    head = ["method", *(header for _, header, _ in columns)]
    return grid_lines(
        head,
        ([row.method, *(cell(row.means.get(key), fmt) for key, _, fmt in columns)] for row in rows),
    )


def lesion_markdown(tables: Mapping[float, Sequence[MeansRow]]) -> list[str]:
    """Lesion tables (biases, CR/BV at 10-13 mm, hot spots) and NEMA tables, per DRF.

    Empty when no row has a lesion figure, so an evaluation without them reads as before.
    """
    rows = [row for table in tables.values() for row in table]
    if not has_columns(rows, LESION_COLUMNS):
        return []
    lines = ["## Lesions", "", LESION_NOTE, ""]
    for drf, table in tables.items():
        lines += [f"### Lesions at DRF {drf:g}", "", *markdown_table(table, LESION_COLUMNS), ""]
    if has_columns(rows, NEMA_COLUMNS):
        lines += ["## NEMA NU 2: contrast recovery (CR) and background variability (BV)", ""]
        for drf, table in tables.items():
            lines += [f"### CR and BV by lesion diameter, DRF {drf:g}", ""]
            lines += [*markdown_table(table, NEMA_COLUMNS), ""]
    return lines
