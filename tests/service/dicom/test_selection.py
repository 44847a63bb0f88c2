"""Tests for service.dicom.selection: what the node denoises, ignores and rejects."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pydicom
import pytest
from pet_samples import algorithm, make_study
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    EnhancedPETImageStorage,
    SecondaryCaptureImageStorage,
)

from service.dicom.provenance import AlgorithmIdentity
from service.dicom.selection import Eligibility, Outcome, assess_instance
from service.dicom.synthetic import write_simulated_study
from service.dicom.volume import load_pet_volume
from service.dicom.writer import write_derived_series


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sel")
    write_simulated_study(make_study(seed=11, drfs=(20.0,)), root / "study")
    return root


@pytest.fixture
def pet_header(study_dir: Path) -> Dataset:
    return pydicom.dcmread(study_dir / "study" / "drf20" / "0001.dcm", stop_before_pixels=True)


def test_attenuation_corrected_pet_in_bqml_is_eligible(pet_header: Dataset) -> None:
    result = assess_instance(pet_header)
    assert result == Eligibility(True, Outcome.ELIGIBLE, "attenuation-corrected PET in Bq/ml")


def test_ct_is_ignored(pet_header: Dataset) -> None:
    pet_header.Modality = "CT"
    pet_header.SOPClassUID = CTImageStorage
    result = assess_instance(pet_header)
    assert (result.eligible, result.outcome) == (False, Outcome.IGNORED)
    assert "CT" in result.reason


def test_non_attenuation_corrected_pet_is_rejected(pet_header: Dataset) -> None:
    pet_header.CorrectedImage = ["DECY", "SCAT", "DTIM", "RAN", "NORM"]
    result = assess_instance(pet_header)
    assert result.outcome is Outcome.REJECTED
    assert "not attenuation corrected" in result.reason


@pytest.mark.parametrize("units", ["CNTS", "GML"])
def test_units_without_conversion_are_rejected(pet_header: Dataset, units: str) -> None:
    pet_header.Units = units
    result = assess_instance(pet_header)
    assert result.outcome is Outcome.REJECTED
    assert result.reason == f"units {units} not supported: no known conversion to Bq/ml"


def test_enhanced_pet_is_rejected(pet_header: Dataset) -> None:
    pet_header.SOPClassUID = EnhancedPETImageStorage
    assert assess_instance(pet_header) == Eligibility(
        False, Outcome.REJECTED, "Enhanced PET not supported yet"
    )


def test_secondary_capture_and_mip_are_ignored(pet_header: Dataset) -> None:
    capture = copy.deepcopy(pet_header)
    capture.SOPClassUID = SecondaryCaptureImageStorage
    assert assess_instance(capture).outcome is Outcome.IGNORED
    pet_header.ImageType = ["DERIVED", "SECONDARY", "MIP"]
    result = assess_instance(pet_header)
    assert result.outcome is Outcome.IGNORED
    assert "MIP" in result.reason


def test_missing_quantitation_header_is_rejected(pet_header: Dataset) -> None:
    del pet_header.PatientWeight
    result = assess_instance(pet_header)
    assert result.outcome is Outcome.REJECTED
    assert "PatientWeight" in result.reason


def test_derived_pet_of_another_system_is_rejected(pet_header: Dataset) -> None:
    pet_header.ImageType = ["DERIVED", "PRIMARY"]
    result = assess_instance(pet_header)
    assert result.outcome is Outcome.REJECTED
    assert "ORIGINAL" in result.reason


@pytest.mark.parametrize(
    "identity",
    [
        algorithm(),
        AlgorithmIdentity(
            name="Gaussian post-filter",
            version="1",
            weights_sha256="0" * 64,
            description="Gaussian, FWHM 4 mm",
        ),
    ],
)
def test_our_own_output_is_ignored(
    study_dir: Path, tmp_path: Path, identity: AlgorithmIdentity
) -> None:
    source = load_pet_volume(sorted((study_dir / "study" / "drf20").glob("*.dcm")))
    written = write_derived_series(source, source.bqml, identity, tmp_path / "out")
    for path in written.paths:
        result = assess_instance(pydicom.dcmread(path, stop_before_pixels=True))
        assert result.outcome is Outcome.IGNORED
        assert "own output" in result.reason


@pytest.mark.parametrize("slope", ["-0.5", "0", "NaN", "inf"])
def test_unusable_rescale_slope_is_rejected_at_once(pet_header: Dataset, slope: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about NaN/inf in DS; senders send it
        pet_header.RescaleSlope = slope
    result = assess_instance(pet_header)
    assert result.outcome is Outcome.REJECTED
    assert "RescaleSlope" in result.reason


@pytest.mark.parametrize("keyword", ["ImagePositionPatient", "ImageOrientationPatient"])
def test_slice_without_geometry_is_rejected(pet_header: Dataset, keyword: str) -> None:
    delattr(pet_header, keyword)
    result = assess_instance(pet_header)
    assert result.outcome is Outcome.REJECTED
    assert keyword in result.reason


def test_bits_allocated_that_cannot_be_decoded_is_rejected(pet_header: Dataset) -> None:
    pet_header.BitsAllocated = 12
    result = assess_instance(pet_header)
    assert result.outcome is Outcome.REJECTED
    assert "BitsAllocated 12" in result.reason


def test_twelve_bit_values_in_sixteen_bit_words_are_eligible(pet_header: Dataset) -> None:
    pet_header.BitsStored, pet_header.HighBit = 12, 11
    assert assess_instance(pet_header).outcome is Outcome.ELIGIBLE


def test_patient_name_longer_than_its_vr_is_rejected_not_copied(pet_header: Dataset) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the length; senders send it
        pet_header.PatientName = "A" * 65 + "^B"
    result = assess_instance(pet_header)
    assert result.outcome is Outcome.REJECTED
    assert "PatientName" in result.reason
