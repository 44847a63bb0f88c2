"""The check of one series against the model card's trained ranges, and how it is written."""

from __future__ import annotations

import dataclasses

import pytest
from pet_samples import algorithm
from pydicom.dataset import Dataset

from service.dicom.card_facts import (
    OUTSIDE_TRAINED_RANGE,
    RangeCheck,
    TrainedRanges,
    check_trained_range,
    drf_in_range,
    series_tracer,
)
from service.dicom.derived import derivation_description

#: UniPET 1.0.0's effective ranges.
RANGES = TrainedRanges(
    drf=(4.0, 100.0), pixel_mm=(3.6, 5.0), slice_mm=(3.0, 6.0), tracers=frozenset({"fdg"})
)
INSIDE = {"drf_estimate": 20.0, "spacing_mm": (4.0, 4.07, 4.07), "tracer": "fdg"}


def _check(**changes: object) -> RangeCheck:
    facts = {**INSIDE, **changes}
    return check_trained_range(RANGES, **facts)  # type: ignore[arg-type]


def test_a_series_like_the_training_data_is_inside() -> None:
    check = _check()
    assert check.checked and not check.outside
    assert check.findings == () and check.note == ""


@pytest.mark.parametrize(
    ("changes", "finding"),
    [
        ({"drf_estimate": 140.0}, "DRF estimate 140 > 100"),
        ({"drf_estimate": 2.5}, "DRF estimate 2.5 < 4"),
        ({"drf_estimate": 12345.6}, "DRF estimate 12346 > 100"),
        ({"spacing_mm": (4.0, 2.0, 2.0)}, "pixel 2 mm < 3.6 mm"),
        ({"spacing_mm": (4.0, 5.47, 5.47)}, "pixel 5.47 mm > 5 mm"),
        ({"spacing_mm": (2.0, 4.0, 4.0)}, "slice 2 mm < 3 mm"),
        ({"spacing_mm": (8.0, 4.0, 4.0)}, "slice 8 mm > 6 mm"),
        ({"tracer": "psma"}, "tracer psma not in fdg"),
    ],
)
def test_each_quantity_outside_is_named_with_its_bound(
    changes: dict[str, object], finding: str
) -> None:
    check = _check(**changes)
    assert check.outside
    assert check.findings == (finding,)
    assert check.note == f"{OUTSIDE_TRAINED_RANGE}: {finding}"


@pytest.mark.parametrize(
    "changes",
    [
        {"drf_estimate": 4.0},
        {"drf_estimate": 100.0},
        {"spacing_mm": (3.0, 3.6, 3.6)},
        {"spacing_mm": (6.0, 5.0, 5.0)},
        # Decimal strings and differenced positions miss a bound by rounding only.
        {"spacing_mm": (2.9999, 3.59999, 5.00001)},
    ],
)
def test_the_bounds_are_inside(changes: dict[str, object]) -> None:
    assert not _check(**changes).outside


def test_every_finding_goes_into_one_note_in_a_fixed_order() -> None:
    check = _check(drf_estimate=140.0, spacing_mm=(20.0, 12.0, 2.0), tracer="psma")
    assert check.note == (
        "outside the trained range: DRF estimate 140 > 100; pixel 2 mm < 3.6 mm; "
        "pixel 12 mm > 5 mm; slice 20 mm > 6 mm; tracer psma not in fdg"
    )


def test_unknown_facts_and_ranges_are_not_findings() -> None:
    assert _check(drf_estimate=None, tracer=None) == _check()
    unknown = TrainedRanges(drf=None, pixel_mm=None, slice_mm=None)
    far = {"drf_estimate": 900.0, "spacing_mm": (30.0, 1.0, 1.0), "tracer": "psma"}
    assert check_trained_range(unknown, **far) == RangeCheck(checked=True)  # type: ignore[arg-type]
    without_card = check_trained_range(None, **far)  # type: ignore[arg-type]
    assert not without_card.checked and not without_card.outside


def test_the_dose_check_and_the_range_check_share_the_drf_comparison() -> None:
    for drf in (3.99, 4.0, 50.0, 100.0, 100.01):
        assert drf_in_range(RANGES.drf, drf) is not _check(drf_estimate=drf).outside
    assert drf_in_range(None, 50.0) is None
    assert drf_in_range(RANGES.drf, None) is None


def test_series_tracer_reads_the_first_radiopharmaceutical() -> None:
    item = Dataset()
    item.Radiopharmaceutical = "Fludeoxyglucose F^18^"
    ds = Dataset()
    ds.RadiopharmaceuticalInformationSequence = [item]
    assert series_tracer(ds) == "fdg"
    assert series_tracer(Dataset()) is None


def test_the_derivation_description_keeps_the_note_within_the_st_limit() -> None:
    note = _check(drf_estimate=140.0, spacing_mm=(20.0, 12.0, 12.0)).note
    short = derivation_description(algorithm(), 140.0, 3, note)
    assert short.endswith(f"; {note}. Not the acquired image.")
    assert derivation_description(algorithm(), 20.0, 3).endswith(
        "3 negative voxels set to 0 Bq/ml. Not the acquired image."
    )
    long_algorithm = dataclasses.replace(algorithm(), description="x" * 2000)
    text = derivation_description(long_algorithm, 140.0, 3, note)
    assert len(text) == 1024  # ST: at most 1024 characters (PS3.5 Table 6.2-1)
    assert text.endswith(f"; {note}. Not the acquired image.")
