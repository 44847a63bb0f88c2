"""Tables and figures of an evaluation: per-DRF tables, JSON, markdown and coronal MIPs.

``results.json`` holds the per-DRF tables (``model.evaluation.tables``), the same tables per
scanner group (``groups``), the full-dose-in check (``full_dose``) and the per-phantom rows,
with non-finite numbers (PSNR of an exact match, a lesion median with no lesion) written as
null so the file stays strict JSON. ``results.md`` renders them for readers.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from model.evaluation.drf_accuracy import DrfRecord
from model.evaluation.full_dose import full_dose_input, full_dose_markdown
from model.evaluation.groups import group_markdown, group_tables
from model.evaluation.lesion_tables import grid_lines, lesion_markdown
from model.evaluation.tables import COLUMNS, CaseRow, TableRow, mean_table

__all__ = [
    "REFERENCE_NOTE",
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
    rows = (
        [row.method, *(_cell(row.means[k], f) for k, _, f in COLUMNS), f"{row.seconds:.1f}"]
        for row in table
    )
    lines = [
        f"### DRF {drf:g} ({kind}), {table[0].n_phantoms if table else 0} test phantoms",
        "",
        *grid_lines(head, rows),
    ]
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
    drf_records: Sequence[DrfRecord] = (),
) -> tuple[Path, Path, str]:
    """Write ``results.json`` and ``results.md`` into ``out``; returns both paths and the text.

    ``drf_records`` (the DRF estimates of the inputs) complete the full-dose-in check.
    """
    out.mkdir(parents=True, exist_ok=True)
    tables = {drf: mean_table(rows, drf, methods) for drf in drfs}
    groups = group_tables(rows, drfs, methods)
    check = full_dose_input(rows, drf_records, methods)
    sections = [table_markdown(tables[d], d, d in training_drfs) for d in drfs if tables[d]]
    groups_json = {
        name: {f"{d:g}": [dataclasses.asdict(t) for t in by_drf[d]] for d in drfs}
        for name, by_drf in groups.items()
    }
    extra = [
        *lesion_markdown({d: t for d, t in tables.items() if t}),
        *group_markdown(
            {name: {f"{d:g}": by_drf[d] for d in drfs} for name, by_drf in groups.items()}
        ),
        *(full_dose_markdown(check) if check is not None else []),
    ]
    markdown = "\n".join(
        ["## Evaluation on held-out test phantoms", "", REFERENCE_NOTE, "", *sections, *extra]
    )
    document = {
        **meta,
        "reference": REFERENCE_NOTE,
        "training_drfs": list(training_drfs),
        "tables": {f"{d:g}": [dataclasses.asdict(t) for t in tables[d]] for d in drfs},
        **({"groups": groups_json} if groups_json else {}),
        **({"full_dose_input": check.to_json()} if check is not None else {}),
        "cases": [dataclasses.asdict(r) for r in rows],
    }
    json_path, md_path = out / "results.json", out / "results.md"
    json_path.write_text(json.dumps(_jsonable(document), indent=1, allow_nan=False))
    md_path.write_text(markdown.rstrip("\n") + "\n")
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
