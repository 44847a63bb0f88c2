"""Tests for service.dicom.pet: SUV factor per QIBA pseudo-code, geometry and instance counts."""

from __future__ import annotations

import math

import pytest
from pydicom import config
from pydicom.dataset import Dataset

from service.dicom import pet
from service.errors import PetHeaderError

_WEIGHT_KG = 70.0
_DOSE_BQ = 370e6
_HALF_LIFE_S = 6586.2


def _expected(decay_s: float) -> float:
    return _WEIGHT_KG * 1000.0 / (_DOSE_BQ * float(2.0 ** (-decay_s / _HALF_LIFE_S)))


def _header(**overrides: object) -> Dataset:
    """A PET header injected at 09:00, scanned from 10:00, DecayCorrection START."""
    drug = Dataset()
    drug.RadionuclideTotalDose = str(_DOSE_BQ)
    drug.RadionuclideHalfLife = str(_HALF_LIFE_S)
    drug.RadiopharmaceuticalStartDateTime = "20240115090000"
    ds = Dataset()
    ds.Units = "BQML"
    ds.CorrectedImage = ["DECY", "ATTN", "SCAT"]
    ds.DecayCorrection = "START"
    ds.PatientWeight = str(_WEIGHT_KG)
    ds.SeriesDate = ds.AcquisitionDate = "20240115"
    ds.SeriesTime = ds.AcquisitionTime = "100000"
    ds.RadiopharmaceuticalInformationSequence = [drug]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-100.0, -120.0, 42.5]
    for keyword, value in overrides.items():
        setattr(ds, keyword, value)
    return ds


def test_start_decay_uses_series_time() -> None:
    assert pet.suv_bw_factor(_header()) == pytest.approx(_expected(3600.0), rel=1e-12)


def test_admin_decay_needs_no_decay_of_the_dose() -> None:
    factor = pet.suv_bw_factor(_header(DecayCorrection="ADMIN"))
    assert factor == pytest.approx(_WEIGHT_KG * 1000.0 / _DOSE_BQ, rel=1e-12)


def test_no_decay_correction_uses_acquisition_time() -> None:
    ds = _header(DecayCorrection="NONE", AcquisitionTime="103000", CorrectedImage=["ATTN"])
    assert pet.suv_bw_factor(ds) == pytest.approx(_expected(5400.0), rel=1e-12)


def test_rewritten_series_time_is_back_computed_from_the_frame() -> None:
    duration_ms = 180_000.0
    decay_constant = math.log(2.0) / _HALF_LIFE_S
    in_frame = decay_constant * duration_ms / 1000.0
    average_s = math.log(in_frame / (1.0 - math.exp(-in_frame))) / decay_constant
    ds = _header(
        SeriesTime="113000",
        AcquisitionTime="100500",
        FrameReferenceTime=f"{300_000.0 + average_s * 1000.0:.6f}",
        ActualFrameDuration=int(duration_ms),
    )
    assert pet.suv_bw_factor(ds) == pytest.approx(_expected(3600.0), rel=1e-9)


def test_start_time_without_date_crossing_midnight() -> None:
    ds = _header(SeriesDate="20240116", SeriesTime="003000", AcquisitionDate="20240116")
    ds.AcquisitionTime = "003000"
    drug = ds.RadiopharmaceuticalInformationSequence[0]
    del drug.RadiopharmaceuticalStartDateTime
    drug.RadiopharmaceuticalStartTime = "235000"
    assert pet.suv_bw_factor(ds) == pytest.approx(_expected(2400.0), rel=1e-12)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Units": "CNTS"}, "units CNTS without Philips SUV"),
        ({"Units": "GML"}, "units GML not supported"),
        ({"PatientWeight": ""}, "PatientWeight"),
        ({"PatientWeight": "0"}, "PatientWeight is 0 kg: SUVbw needs the body weight"),
        ({"PatientWeight": None}, "PatientWeight is absent"),
        ({"CorrectedImage": ["DECY", "SCAT"]}, "ATTN"),
        ({"CorrectedImage": ["ATTN"]}, "DECY"),
        ({"RadiopharmaceuticalInformationSequence": []}, "RadiopharmaceuticalInformation"),
        ({"SeriesTime": "256199"}, "SeriesTime"),
        ({"DecayCorrection": "WEIRD"}, "WEIRD"),
        ({"SeriesTime": "080000", "AcquisitionTime": "080000"}, "after the START decay"),
        ({"SeriesDate": "20240118", "AcquisitionDate": "20240118"}, "more than 10 half-lives"),
    ],
)
def test_missing_or_bad_quantitation_headers_are_named(
    overrides: dict[str, object], message: str
) -> None:
    with config.disable_value_validation():
        ds = _header(**overrides)
    with pytest.raises(PetHeaderError, match=message):
        pet.suv_bw_factor(ds)


def test_missing_injection_time_is_named() -> None:
    ds = _header()
    del ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime
    with pytest.raises(PetHeaderError, match="RadiopharmaceuticalStartTime"):
        pet.suv_bw_factor(ds)


def test_slice_position_of_axial_slice_is_z() -> None:
    assert pet.slice_position_mm(_header()) == pytest.approx(42.5)


def test_slice_position_projects_on_the_normal() -> None:
    ds = _header(ImageOrientationPatient=[0, 1, 0, 0, 0, -1], ImagePositionPatient=[5, 2, 3])
    assert pet.slice_position_mm(ds) == pytest.approx(-5.0)


def test_non_orthonormal_orientation_is_refused() -> None:
    ds = _header(ImageOrientationPatient=[1, 0, 0, 1, 0, 0])
    with pytest.raises(PetHeaderError, match="orthonormal"):
        pet.slice_position_mm(ds)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"NumberOfSlices": 47}, 47),
        ({"NumberOfSlices": 47, "NumberOfTimeSlots": 8}, 376),
        ({"NumberOfSlices": 47, "NumberOfTimeSlices": 3}, 141),
        ({"NumberOfSlices": 47, "NumberOfFrames": 47}, 1),
        ({}, None),
        ({"NumberOfSlices": 47, "NumberOfFrames": 5}, None),
    ],
)
def test_expected_instance_count(attributes: dict[str, object], expected: int | None) -> None:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    assert pet.expected_instance_count(ds) == expected


def test_small_accessors() -> None:
    ds = _header(ImageType=["ORIGINAL", "PRIMARY"], RescaleSlope="2.5", RescaleIntercept="0")
    assert pet.image_type(ds) == ("ORIGINAL", "PRIMARY")
    assert pet.corrected_image(ds) == frozenset({"DECY", "ATTN", "SCAT"})
    assert pet.rescale(ds) == (2.5, 0.0)
    assert pet.units(ds) == "BQML"
    assert pet.decay_correction(ds) == "START"
