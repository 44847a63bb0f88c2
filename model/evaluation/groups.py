"""Tables by scanner: trained vs unseen scanner profiles, and one per profile.

A network trained on some scanners' noise textures and voxel sizes must be seen to hold on
profiles it never saw (``held_out_scanners`` datasets), so the per-DRF tables are also made
for each group of rows. A group that would repeat the overall table (all rows trained, or a
single scanner) is left out. Markdown shows a few key figures as matrices: a row per
(group, method), a column per DRF.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from model.evaluation.lesion_tables import MeansRow, cell, grid_lines
from model.evaluation.tables import CaseRow, TableRow, mean_table

__all__ = ["GROUP_FIGURES", "UNSEEN", "group_markdown", "group_tables", "row_groups"]

TRAINED = "trained scanners"
UNSEEN = "unseen scanners"
SCANNER_PREFIX = "scanner "

# (key of the table means, title, format)
GROUP_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("psnr_db", "PSNR dB", "{:.2f}"),
    ("liver_cov_ratio", "liver CoV ratio", "{:.2f}"),
    ("lesion_peak_bias_nf_pct", "lesion SUVpeak bias % (vs noise-free)", "{:+.1f}"),
    ("false_hot_spots", "false hot spots / volume", "{:.2f}"),
)


def row_groups(rows: Sequence[CaseRow]) -> dict[str, Callable[[CaseRow], bool]]:
    """The groups the rows fall into, each as a test of a row, in a fixed order."""
    groups: dict[str, Callable[[CaseRow], bool]] = {}
    held_out = {r.held_out_scanner for r in rows}
    if True in held_out and len(held_out) > 1:
        groups[TRAINED] = lambda r: r.held_out_scanner is False
        groups[UNSEEN] = lambda r: r.held_out_scanner is True
    scanners = sorted({r.scanner for r in rows if r.scanner is not None})
    if len(scanners) > 1:
        for name in scanners:
            groups[SCANNER_PREFIX + name] = _on_scanner(name)
    return groups


def _on_scanner(name: str) -> Callable[[CaseRow], bool]:
    """The test of a row for one scanner profile."""
    return lambda row: row.scanner == name


def group_tables(
    rows: Sequence[CaseRow], drfs: Sequence[float], methods: Sequence[str]
) -> dict[str, dict[float, list[TableRow]]]:
    """Per-DRF mean tables of every group (:func:`row_groups`)."""
    tables = {}
    for name, belongs in row_groups(rows).items():
        selected = [r for r in rows if belongs(r)]
        tables[name] = {drf: mean_table(selected, drf, methods) for drf in drfs}
    return tables


def group_markdown(groups: Mapping[str, Mapping[str, Sequence[MeansRow]]]) -> list[str]:
    """Matrices of :data:`GROUP_FIGURES`: a row per (group, method), a column per DRF.

    ``groups`` maps a group to its tables keyed by DRF text, as ``results.json`` holds them.
    """
    if not groups:
        return []
    drfs = sorted({key for tables in groups.values() for key in tables}, key=float)
    lines = ["## By scanner", ""]
    for key, title, fmt in GROUP_FIGURES:
        head = ["group", "method", *(f"DRF {float(d):g}" for d in drfs)]
        rows = []
        for group, tables in groups.items():
            methods = list(dict.fromkeys(r.method for d in drfs for r in tables.get(d, ())))
            for method in methods:
                cells = []
                for d in drfs:
                    row = next((r for r in tables.get(d, ()) if r.method == method), None)
                    cells.append(cell(row.means.get(key) if row else None, fmt))
                rows.append([group, method, *cells])
        lines += [f"### {title}", "", *grid_lines(head, rows), ""]
    return lines
