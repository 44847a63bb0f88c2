"""The measured parts of the model card: evaluation tables, target checks, DRF estimate accuracy.

Each part has the JSON form that ``model.evaluate`` writes (``results.json``,
``drf_estimate.json``) and that the shipped card holds, field for field and in the same order,
so a card read and written again is the same file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from model.card._json import Reader, omit_none
from model.errors import CardError
from model.evaluation.drf_accuracy import DrfOverall, DrfSummary, PatientSpread
from model.evaluation.full_dose import FullDoseInput, FullDoseRow
from model.evaluation.targets import TargetCheck

__all__ = [
    "DrfAccuracy",
    "Evaluation",
    "MethodMeans",
    "full_dose_from_json",
    "overall_from_json",
    "summary_from_json",
    "target_from_json",
]


@dataclass(frozen=True)
class MethodMeans:
    """One method's row of a DRF's table: means over the test phantoms (None: not finite)."""

    method: str
    n_phantoms: int
    seconds: float
    means: Mapping[str, float | None]

    def to_json(self) -> dict[str, object]:
        """The row as ``results.json`` holds it."""
        return {
            "method": self.method,
            "n_phantoms": self.n_phantoms,
            "seconds": self.seconds,
            "means": dict(self.means),
        }

    @classmethod
    def from_json(cls, r: Reader) -> MethodMeans:
        """Read a row (raises CardError on a missing or mistyped field)."""
        means = r.obj("means")
        row = cls(
            method=r.text("method"),
            n_phantoms=r.integer("n_phantoms"),
            seconds=r.number("seconds"),
            means={key: means.opt_number(key) for key in means.names()},
        )
        r.done()
        return row


DrfTables = Mapping[str, tuple[MethodMeans, ...]]


def _tables_json(tables: DrfTables) -> dict[str, list[dict[str, object]]]:
    """Per-DRF tables in their JSON form."""
    return {k: [row.to_json() for row in rows] for k, rows in tables.items()}


def _tables_from_json(tables: Reader) -> DrfTables:
    """Per-DRF tables keyed by DRF text.

    Raises:
        CardError: a key that is not a DRF, or a malformed row.
    """
    keys = tables.names()
    for key in keys:
        try:
            float(key)
        except ValueError:
            raise CardError(f"evaluation table key {key!r} is not a DRF") from None
    read = {k: tuple(MethodMeans.from_json(row) for row in tables.objs(k)) for k in keys}
    tables.done()
    return read


def full_dose_from_json(r: Reader) -> FullDoseInput:
    """The full-dose-in check (``model.evaluation.full_dose``)."""
    rows = []
    for row in r.objs("methods"):
        rows.append(
            FullDoseRow(
                method=row.text("method"),
                n_phantoms=row.integer("n_phantoms"),
                hottest_lesion_max_bias_pct=row.opt_number("hottest_lesion_max_bias_pct"),
                liver_cov_ratio=row.opt_number("liver_cov_ratio"),
            )
        )
        row.done()
    check = FullDoseInput(
        n_phantoms=r.integer("n_phantoms"),
        drf_estimate=r.opt_number("drf_estimate"),
        methods=tuple(rows),
    )
    r.done()
    return check


@dataclass(frozen=True)
class Evaluation:
    """The held-out evaluation: phantoms, DRFs, reference note and one table per DRF.

    Table keys stay the text ``results.json`` uses (``"4"``, ``"0.5"``). ``groups`` (the
    tables per scanner group) and ``full_dose_input`` (the full-dose-in check) exist from
    1.1 on and are left out of the JSON when absent; so is ``seed_methods``, the method rows
    that are the shipped recipe trained with each seed (shipped one first), for the
    seed-to-seed spread.
    """

    size: str
    test_seeds: tuple[int, ...]
    drfs: tuple[float, ...]
    training_drfs: tuple[float, ...]
    reference: str
    tables: DrfTables
    groups: Mapping[str, DrfTables] | None = None
    full_dose_input: FullDoseInput | None = None
    seed_methods: tuple[str, ...] | None = None

    def to_json(self) -> dict[str, object]:
        """The card's ``evaluation`` object."""
        groups = self.groups
        return {
            "size": self.size,
            "test_seeds": list(self.test_seeds),
            "drfs": list(self.drfs),
            "training_drfs": list(self.training_drfs),
            "reference": self.reference,
            "tables": self.tables_json(),
            **omit_none(
                [
                    (
                        "groups",
                        {k: _tables_json(v) for k, v in groups.items()} if groups else None,
                    ),
                    (
                        "full_dose_input",
                        self.full_dose_input.to_json() if self.full_dose_input else None,
                    ),
                    (
                        "seed_methods",
                        list(self.seed_methods) if self.seed_methods else None,
                    ),
                ]
            ),
        }

    def tables_json(self) -> dict[str, list[dict[str, object]]]:
        """The tables in their JSON form (what the target checks read)."""
        return _tables_json(self.tables)

    @classmethod
    def from_json(cls, r: Reader) -> Evaluation:
        """Read the evaluation.

        Raises:
            CardError: a missing or mistyped field, or a table key that is not a DRF.
        """
        groups = r.opt_obj("groups")
        full_dose = r.opt_obj("full_dose_input")
        evaluation = cls(
            size=r.text("size"),
            test_seeds=r.integers("test_seeds"),
            drfs=r.numbers("drfs"),
            training_drfs=r.numbers("training_drfs"),
            reference=r.text("reference"),
            tables=_tables_from_json(r.obj("tables")),
            groups=(
                {name: _tables_from_json(groups.obj(name)) for name in groups.names()}
                if groups is not None
                else None
            ),
            full_dose_input=full_dose_from_json(full_dose) if full_dose is not None else None,
            seed_methods=r.opt_texts("seed_methods"),
        )
        if groups is not None:
            groups.done()
        r.done()
        return evaluation


def target_from_json(r: Reader) -> TargetCheck:
    """One target check (``drf`` null: over all DRFs)."""
    check = TargetCheck(
        check=r.text("check"),
        drf=r.opt_number("drf"),
        value=r.number("value"),
        threshold=r.number("threshold"),
        passed=r.flag("passed"),
    )
    r.done()
    return check


def summary_from_json(r: Reader) -> DrfSummary:
    """The DRF estimate's accuracy at one true DRF."""
    summary = DrfSummary(
        drf=r.number("drf"),
        training=r.flag("training"),
        n=r.integer("n"),
        median_estimate=r.number("median_estimate"),
        median_factor_error=r.number("median_factor_error"),
        fraction_within_band=r.number("fraction_within_band"),
    )
    r.done()
    return summary


def overall_from_json(r: Reader) -> DrfOverall:
    """The DRF estimate's accuracy over every test volume."""
    overall = DrfOverall(
        n=r.integer("n"),
        median_factor_error=r.number("median_factor_error"),
        fraction_within_band=r.number("fraction_within_band"),
    )
    r.done()
    return overall


@dataclass(frozen=True)
class DrfAccuracy:
    """How far the calibrated DRF estimate was off on the test phantoms.

    The optional fields say what was measured (weights, phantoms, DRFs); they are left out of
    the JSON when unknown. The per-case records stay in the evaluation folder.
    """

    band_factor: float
    overall: DrfOverall
    per_drf: tuple[DrfSummary, ...]
    weights: str | None = None
    size: str | None = None
    test_seeds: tuple[int, ...] | None = None
    drfs: tuple[float, ...] | None = None
    weights_sha256: str | None = None
    training_drfs: tuple[float, ...] | None = None
    n_unestimated: int | None = None
    patient_spread: PatientSpread | None = None

    def to_json(self) -> dict[str, object]:
        """The card's ``drf_estimate_accuracy`` object (``drf_estimate.json`` less records)."""
        return omit_none(
            [
                ("weights", self.weights),
                ("size", self.size),
                ("test_seeds", self.test_seeds),
                ("drfs", self.drfs),
                ("weights_sha256", self.weights_sha256),
                ("training_drfs", self.training_drfs),
                ("n_unestimated", self.n_unestimated),
                ("band_factor", self.band_factor),
                ("overall", dataclasses.asdict(self.overall)),
                ("per_drf", [dataclasses.asdict(s) for s in self.per_drf]),
                ("patient_spread", _asdict_or_none(self.patient_spread)),
            ]
        )

    @classmethod
    def from_json(cls, r: Reader, *, records: bool = False) -> DrfAccuracy:
        """Read the accuracy; ``records`` True skips the per-case records of the full report.

        Raises:
            CardError: a missing or mistyped field.
        """
        if records:
            r.objs("records")
        accuracy = cls(
            band_factor=r.number("band_factor"),
            overall=overall_from_json(r.obj("overall")),
            per_drf=tuple(summary_from_json(s) for s in r.objs("per_drf")),
            weights=r.opt_text("weights"),
            size=r.opt_text("size"),
            test_seeds=r.opt_integers("test_seeds"),
            drfs=tuple(r.numbers("drfs")) if r.has("drfs") else None,
            weights_sha256=r.opt_text("weights_sha256"),
            training_drfs=tuple(r.numbers("training_drfs")) if r.has("training_drfs") else None,
            n_unestimated=r.integer("n_unestimated") if r.has("n_unestimated") else None,
            patient_spread=_spread(r.opt_obj("patient_spread")),
        )
        r.done()
        return accuracy


def _asdict_or_none(spread: PatientSpread | None) -> dict[str, object] | None:
    """The spread as a JSON object, or None (left out)."""
    return None if spread is None else dataclasses.asdict(spread)


def _spread(r: Reader | None) -> PatientSpread | None:
    """The patient-spread floor of a DRF report, or None when it has none."""
    if r is None:
        return None
    spread = PatientSpread(
        n=r.integer("n"),
        floor_median_factor_error=r.number("floor_median_factor_error"),
        median_factor_error_without_spread=r.number("median_factor_error_without_spread"),
    )
    r.done()
    return spread
