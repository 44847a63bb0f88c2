"""Tables and figures of an evaluation: per-DRF means, JSON, markdown and coronal MIPs.

Every table is a mean over test phantoms of the per-phantom figures of
``model.evaluation.metrics``; lesion columns skip phantoms without a measurable lesion.
JSON holds the per-phantom rows too, with non-finite numbers (PSNR of an exact match, a
lesion median with no lesion) written as null so the file stays strict JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from model.evaluation.metrics import CaseMetrics

__all__ = [
    "COLUMNS",
    "REFERENCE_NOTE",
    "CaseRow",
    "TableRow",
    "mean_table",
    "save_mip_figure",
    "table_markdown",
    "write_reports",
]

REFERENCE_NOTE = (
    "Reference: the full-dose reconstruction of the same phantom. PSNR, NRMSE and 3D SSIM on "
    "SUV clipped to [0, 20] over the whole volume (data range 20). Liver: eroded liver without "
    "lesions; bias of SUVmean vs full dose; CoV ratio = output CoV / full-dose CoV (1.0 = "
    "full-dose texture). Lesions: median over lesions of SUVmax and SUVmean bias vs full dose, "
    "SUVmean bias vs the true SUV, and NEMA-style contrast recovery (CRC) vs truth."
)

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


@dataclass(frozen=True)
class CaseRow:
    """One method on one phantom at one DRF."""

    seed: int
    drf: float
    method: str
    seconds: float
    metrics: CaseMetrics


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
    """One row per method (in ``methods`` order) of the means over phantoms at ``drf``."""
    table = []
    for method in methods:
        sel = [r for r in rows if r.drf == drf and r.method == method]
        if not sel:
            continue
        means = {key: _mean([float(getattr(r.metrics, key)) for r in sel]) for key, _, _ in COLUMNS}
        seconds = float(np.mean([r.seconds for r in sel]))
        table.append(TableRow(method, len(sel), seconds, means))
    return table


def _cell(value: float, fmt: str) -> str:
    """A formatted table cell; n/a for NaN."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf"
    return fmt.format(value)


def table_markdown(table: Sequence[TableRow], drf: float, seen: bool) -> str:
    """A markdown table of one DRF, headed by whether the DRF was used in training."""
    kind = "training DRF" if seen else "unseen DRF, held out of training"
    head = ["method", *(h for _, h, _ in COLUMNS), "s / volume"]
    lines = [
        f"### DRF {drf:g} ({kind}), {table[0].n_phantoms if table else 0} test phantoms",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for row in table:
        cells = [_cell(row.means[k], f) for k, _, f in COLUMNS]
        lines.append(f"| {row.method} | " + " | ".join(cells) + f" | {row.seconds:.1f} |")
    return "\n".join(lines) + "\n"


def _jsonable(value: object) -> object:
    """Non-finite floats as None, recursively, so ``json.dumps`` writes strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def write_reports(
    out: Path,
    rows: Sequence[CaseRow],
    drfs: Sequence[float],
    methods: Sequence[str],
    training_drfs: Sequence[float],
    meta: Mapping[str, object],
) -> tuple[Path, Path, str]:
    """Write ``results.json`` and ``results.md`` into ``out``; returns both paths and the text."""
    out.mkdir(parents=True, exist_ok=True)
    tables = {drf: mean_table(rows, drf, methods) for drf in drfs}
    sections = [table_markdown(tables[d], d, d in training_drfs) for d in drfs if tables[d]]
    markdown = "\n".join(
        ["## Evaluation on held-out test phantoms", "", REFERENCE_NOTE, "", *sections]
    )
    document = {
        **meta,
        "reference": REFERENCE_NOTE,
        "training_drfs": list(training_drfs),
        "tables": {f"{d:g}": [dataclasses.asdict(t) for t in tables[d]] for d in drfs},
        "cases": [dataclasses.asdict(r) for r in rows],
    }
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(_jsonable(document), indent=1, allow_nan=False))
    md_path.write_text(markdown)
    return json_path, md_path, markdown


def save_mip_figure(
    path: Path,
    panels: Sequence[tuple[str, npt.NDArray[np.float32]]],
    spacing_mm: tuple[float, float, float],
    suv_per_bqml: float,
    title: str,
    suv_max: float = 7.0,
) -> Path:
    """Coronal MIPs side by side: inverted grey, head up, one SUV window [0, ``suv_max``].

    Axis 0 runs from the feet to the head, so the MIP is flipped vertically to put the head
    at the top, as a reader expects.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dz, _, dx = spacing_mm
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 4.6), facecolor="white")
    for ax, (name, volume) in zip(np.atleast_1d(axes), panels, strict=True):
        mip = volume.max(axis=1)[::-1] * np.float32(suv_per_bqml)
        ax.imshow(mip, cmap="gray_r", vmin=0.0, vmax=suv_max, aspect=dz / dx)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(f"{title} (coronal MIP, SUV 0-{suv_max:g})", fontsize=10)
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.93))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=60)
    plt.close(fig)
    return path
