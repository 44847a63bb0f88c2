"""Rows of an earlier evaluation that a new one takes instead of computing them again.

Scoring every network of a release on 14 test phantoms at 13 DRFs takes hours of a 2-core
machine, most of it running networks and scoring their outputs, and the runs behind a
release finish hours apart. With ``model.evaluate --reuse EARLIER/results.json [...]`` each
evaluation computes only the methods that are new or changed and takes the other methods'
rows from the earlier ``results.json`` files (each method from the first that has it).

A method's rows are taken only when what made them is what this run would use: the same
name, the same weights (SHA-256) for a network or the same settings for a filter, the same
choice of a matched Gaussian, and the same metric definitions (the reference note). A
(phantom, DRF) the earlier run did not score is computed. The first phantom is always
computed in full, since its MIP figures need every output.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from model.evaluation.methods import MATCHED_PREFIX, Method
from model.evaluation.metrics import CaseMetrics, LesionRecord
from model.evaluation.tables import CaseRow

__all__ = ["ReusedRows", "case_row_from_json", "load_reusable", "method_identities"]

CaseKey = tuple[str | None, int, float, str]  # dataset, seed, DRF, method


def method_identities(methods: Sequence[Method], match: frozenset[str] | None) -> dict[str, str]:
    """What makes each method's rows, by name; a network that gets a matched Gaussian says so
    (``match`` None: every network does)."""
    identities = {}
    for method in methods:
        matched = method.network and (match is None or method.name in match)
        identities[method.name] = method.made_by + (" + matched gaussian" if matched else "")
    return identities


@dataclass(frozen=True)
class ReusedRows:
    """Earlier rows by (dataset, seed, DRF, method); a method's matched Gaussian rides along."""

    rows: Mapping[CaseKey, tuple[CaseRow, ...]] = field(default_factory=dict)

    def take(self, dataset: str | None, seed: int, drf: float, method: str) -> list[CaseRow]:
        """The earlier rows of ``method`` on that phantom and DRF; empty when it has none."""
        return list(self.rows.get((dataset, seed, float(drf), method), ()))

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.rows.values())


def _number(value: object) -> float:
    """A JSON number; null (how the report writes a non-finite value) as NaN."""
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def case_row_from_json(data: Mapping[str, object]) -> CaseRow:
    """A case row as ``results.json`` holds it. PSNR is infinite exactly where the output
    equals the full dose (NRMSE 0); every other null is NaN.

    Raises:
        KeyError, TypeError, ValueError: a malformed case.
    """
    metrics = dict(data["metrics"])  # type: ignore[call-overload]
    values = {key: _number(metrics[key]) for key in CaseMetrics.__dataclass_fields__}
    if metrics["psnr_db"] is None and values["nrmse"] == 0.0:
        values["psnr_db"] = math.inf
    values["n_lesions"] = int(values["n_lesions"])
    lesions = tuple(
        LesionRecord(
            label=int(lesion["label"]),
            **{
                key: _number(lesion[key])
                for key in LesionRecord.__dataclass_fields__
                if key != "label"
            },
        )
        for lesion in data["lesions"]  # type: ignore[attr-defined]
    )
    fwhm = data.get("fwhm_mm")
    held_out = data.get("held_out_scanner")
    dataset, scanner = data.get("dataset"), data.get("scanner")
    return CaseRow(
        seed=int(data["seed"]),  # type: ignore[call-overload]
        drf=float(data["drf"]),  # type: ignore[arg-type]
        method=str(data["method"]),
        seconds=_number(data["seconds"]),
        metrics=CaseMetrics(**values),  # type: ignore[arg-type]
        lesions=lesions,
        dataset=None if dataset is None else str(dataset),
        scanner=None if scanner is None else str(scanner),
        held_out_scanner=None if held_out is None else bool(held_out),
        fwhm_mm=None if fwhm is None else float(fwhm),  # type: ignore[arg-type]
    )


def _owner(method: str) -> str:
    """The method a row belongs to: a matched Gaussian's row belongs to its network."""
    return method.removeprefix(MATCHED_PREFIX)


def load_reusable(
    paths: Path | Sequence[Path], identities: Mapping[str, str], reference: str
) -> ReusedRows:
    """The rows of ``paths`` (``results.json`` files) whose methods were made as
    ``identities`` say.

    Evaluations made apart (a network scored while another still trained) are taken together:
    each method comes from the first file that holds it made the same way, whole, never a
    mix of two files' rows for one method.

    Raises:
        ValueError: a file is not an evaluation with recorded methods, or its metrics were
            defined otherwise (another reference note).
    """
    grouped: dict[CaseKey, list[CaseRow]] = {}
    taken: set[str] = set()
    for path in [paths] if isinstance(paths, Path) else paths:
        rows, methods = _usable_rows(path, identities, reference, skip=taken)
        taken |= methods
        for key, found in rows.items():
            grouped.setdefault(key, []).extend(found)
    return ReusedRows({key: tuple(rows) for key, rows in grouped.items()})


def _usable_rows(
    path: Path, identities: Mapping[str, str], reference: str, skip: set[str]
) -> tuple[dict[CaseKey, list[CaseRow]], set[str]]:
    """One file's reusable rows, by key, and the methods they belong to (``skip``: taken)."""
    try:
        document = json.loads(path.read_text())
        earlier: Mapping[str, str] = document["methods"]
        cases = document["cases"]
        same_reference = document["reference"] == reference
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is no evaluation whose methods can be reused: {exc}") from exc
    if not same_reference:
        raise ValueError(f"{path} was scored with other metric definitions; nothing is reused")
    usable = {
        name
        for name, made_by in identities.items()
        if earlier.get(name) == made_by and name not in skip
    }
    grouped: dict[CaseKey, list[CaseRow]] = {}
    try:
        for case in cases:
            owner = _owner(str(case["method"]))
            if owner not in usable:
                continue
            row = case_row_from_json(case)
            grouped.setdefault((row.dataset, row.seed, row.drf, owner), []).append(row)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} holds a malformed case: {exc}") from exc
    return grouped, usable
