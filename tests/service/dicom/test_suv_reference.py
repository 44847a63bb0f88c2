"""SUVbw factors against published vendor header extracts (see calculate_suv_cases.py)."""

from __future__ import annotations

import pytest
from calculate_suv_cases import CASES
from pydicom.dataset import Dataset

from service.dicom import pet
from service.errors import PetHeaderError

_RADIOPHARMACEUTICAL = (
    "RadionuclideTotalDose",
    "RadionuclideHalfLife",
    "RadiopharmaceuticalStartTime",
    "RadiopharmaceuticalStartDateTime",
)
_PRIVATE = {"PhilipsSUVScaleFactor": 0x00, "PhilipsActivityConcentrationScaleFactor": 0x09}


def header(case: dict[str, object]) -> Dataset:
    """A PET header holding one extract, private Philips factors in their own block."""
    ds = Dataset()
    item = Dataset()
    for keyword, value in case.items():
        if keyword == "expected":
            continue
        if keyword in _PRIVATE:
            block = ds.private_block(pet.PHILIPS_PRIVATE_GROUP, pet.PHILIPS_PRIVATE_CREATOR, True)
            block.add_new(_PRIVATE[keyword], "DS", value)
        elif keyword in _RADIOPHARMACEUTICAL:
            setattr(item, keyword, value)
        else:
            setattr(ds, keyword, value)
    ds.RadiopharmaceuticalInformationSequence = [item]
    return ds


@pytest.mark.parametrize("name", sorted(CASES))
def test_suv_factor_per_stored_unit_matches_published_value(name: str) -> None:
    case = CASES[name]
    ds = header(case)
    factor = pet.activity_scale(ds) * pet.suv_bw_factor(ds)
    expected = float(str(case["expected"]))
    assert abs(factor - expected) / expected < 1e-4, (factor, expected)


def test_philips_cnts_without_private_factors_is_refused() -> None:
    case = {k: v for k, v in CASES["PHILIPS_CNTS_AND_SUV"].items() if k not in _PRIVATE}
    with pytest.raises(PetHeaderError, match="CNTS without Philips"):
        pet.suv_bw_factor(header(case))


def test_philips_factors_that_disagree_are_refused() -> None:
    case = dict(CASES["PHILIPS_CNTS_AND_BQML_SUV"])
    case["PhilipsActivityConcentrationScaleFactor"] = "2.0"
    with pytest.raises(PetHeaderError, match="disagree"):
        pet.activity_scale(header(case))
