"""A release's comparison as one markdown table, read from its ``results.json``.

A row per DRF: the PSNR of every compared method, then what a reader sees in the shipped
network's output (liver texture and SUVmean, lesion SUVmax and SUVpeak, false hot spots),
and a last row with each method's mean PSNR over the DRFs above 1. The README's and the
model card's comparison come from here (``scripts/release-unipet-1.1`` writes
``EVAL/comparison.md``), so every number in them can be checked against the results file.

    python -m model.evaluation.comparison EVAL/results.json --shipped unipet \\
        --column tuned_gaussian="tuned Gaussian" --column 'drf{drf}=DRF-specific' ...

A column's method may hold ``{drf}``: the DRF-specific networks, one per trained DRF, named
``drf2``, ``drf4`` and so on, make one column.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DETAILS", "Column", "comparison_markdown", "main", "parse_column"]

#: What a reader sees in the shipped output: (key of the table means, heading, format).
DETAILS: tuple[tuple[str, str, str], ...] = (
    ("liver_cov_ratio", "liver CoV ratio", "{:.2f}"),
    ("liver_bias_pct", "liver SUVmean", "{:+.1f} %"),
    ("lesion_max_bias_pct", "lesion SUVmax", "{:+.1f} %"),
    ("lesion_peak_bias_nf_pct", "lesion SUVpeak vs noise-free", "{:+.1f} %"),
    ("false_hot_spots", "false hot spots / volume (full dose)", "{:.1f}"),
)

Means = Mapping[str, Mapping[str, float | None]]  # method -> figure -> value


@dataclass(frozen=True)
class Column:
    """One compared method: its name in ``results.json`` (may hold ``{drf}``) and heading."""

    method: str
    label: str

    def name_at(self, drf: float) -> str:
        """The method's name at ``drf`` (``drf{drf}`` -> ``drf20``)."""
        return self.method.format(drf=f"{drf:g}")


def parse_column(text: str) -> Column:
    """``NAME=LABEL``, or ``NAME`` alone (its own heading)."""
    method, _, label = text.partition("=")
    if not method:
        raise ValueError(f"a column is NAME=LABEL, got {text!r}")
    return Column(method, label or method)


def _means_by_drf(document: Mapping[str, object]) -> dict[float, Means]:
    tables = document["tables"]
    if not isinstance(tables, Mapping):
        raise ValueError("results.json holds no per-DRF tables")
    return {
        float(drf): {row["method"]: row["means"] for row in rows} for drf, rows in tables.items()
    }


def _cell(value: float | None, template: str) -> str:
    return "-" if value is None else template.format(value)


def comparison_markdown(
    document: Mapping[str, object], columns: Sequence[Column], shipped: str
) -> str:
    """The table for ``document`` (a loaded ``results.json``).

    Raises:
        ValueError: the document has no per-DRF tables, or ``shipped`` is in none of them.
    """
    by_drf = _means_by_drf(document)
    if not any(shipped in means for means in by_drf.values()):
        raise ValueError(f"method {shipped!r} is not in the results")
    trained = {float(d) for d in document.get("training_drfs", [])}  # type: ignore[attr-defined]
    headings = [c.label for c in columns] + [heading for _, heading, _ in DETAILS]
    lines = ["| DRF | " + " | ".join(headings) + " |", "|---" * (1 + len(headings)) + "|"]
    psnr: dict[Column, list[float]] = {c: [] for c in columns}
    for drf in sorted(by_drf):
        means = by_drf[drf]
        if drf <= 1:
            label, cells = "1 (full dose in)", ["-"] * len(columns)
        else:
            label = f"{drf:g}" + ("" if drf in trained else " (unseen)")
            cells = []
            for column in columns:
                value = means.get(column.name_at(drf), {}).get("psnr_db")
                cells.append(_cell(value, "{:.2f}"))
                if value is not None:
                    psnr[column].append(value)
        shipped_means = means.get(shipped, {})
        details = [_cell(shipped_means.get(key), fmt) for key, _, fmt in DETAILS]
        full_dose_spots = means.get("full_dose", {}).get("false_hot_spots")
        details[-1] += f" ({full_dose_spots:.1f})" if full_dose_spots is not None else ""
        lines.append(f"| {label} | " + " | ".join(cells + details) + " |")
    n_drfs = sum(1 for drf in by_drf if drf > 1)
    mean_cells = [
        f"{statistics.mean(values):.2f}" if len(values) == n_drfs else "-"
        for values in psnr.values()
    ]
    lines.append(
        f"| mean of {n_drfs} DRFs | " + " | ".join(mean_cells) + " |" + " |" * len(DETAILS)
    )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Print (or write with ``--out``) the table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="an evaluation's results.json")
    parser.add_argument("--shipped", required=True, help="method name of the shipped network")
    parser.add_argument(
        "--column",
        dest="columns",
        action="append",
        required=True,
        metavar="NAME=LABEL",
        help="a compared method and its heading, in order; NAME may hold {drf}",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the table here")
    args = parser.parse_args(argv)
    try:
        columns = [parse_column(text) for text in args.columns]
        table = comparison_markdown(json.loads(args.results.read_text()), columns, args.shipped)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"cannot make the comparison: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.write_text(table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
