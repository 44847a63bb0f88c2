"""Tests for service.dicom.selection: what the node denoises, ignores and rejects."""

from __future__ import annotations

import copy
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
from service.dicom.selection import Eligibility, Outcome, TracerPolicy, assess_instance
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


@pytest.mark.parametrize(
    ("units", "reason"),
    [
        ("GML", "units GML not supported: no known conversion to Bq/ml"),
        (
            "CNTS",
            "units CNTS without Philips SUV (7053,1000) or activity concentration "
            "(7053,1009) scale factor: no known conversion to Bq/ml",
        ),
    ],
)
def test_units_without_conversion_are_rejected(
    pet_header: Dataset, units: str, reason: str
) -> None:
    pet_header.Units = units
    result = assess_instance(pet_header)
    assert (result.outcome, result.code, result.reason) == (Outcome.REJECTED, "units", reason)


def test_enhanced_pet_is_rejected(pet_header: Dataset) -> None:
    pet_header.SOPClassUID = EnhancedPETImageStorage
    assert assess_instance(pet_header) == Eligibility(
        False, Outcome.REJECTED, "Enhanced PET not supported yet", "enhanced_pet"
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


def _nuclide(code: str, meaning: str, half_life_s: float) -> tuple[list[Dataset], float]:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "SCT", meaning
    return [item], half_life_s


@pytest.mark.parametrize(
    ("code", "meaning", "half_life_s", "expected_code", "words"),
    [
        ("447553000", "^177^Lutetium", 574300.0, "not_positron_emitter", "Lu-177"),
        ("72454006", "^99m^Technetium", 21624.0, "not_positron_emitter", "Tc-99m"),
        ("1368003", "^131^Iodine", 692900.0, "not_positron_emitter", "I-131"),
        ("999999", "^999^Unobtainium", 1000.0, "radionuclide_unknown", "Unobtainium"),
        ("77004003", "^18^Fluorine", 574300.0, "radionuclide_unknown", "half-life"),
    ],
)
def test_non_positron_or_unknown_nuclides_are_ignored(
    pet_header: Dataset,
    code: str,
    meaning: str,
    half_life_s: float,
    expected_code: str,
    words: str,
) -> None:
    drug = pet_header.RadiopharmaceuticalInformationSequence[0]
    drug.RadionuclideCodeSequence, drug.RadionuclideHalfLife = _nuclide(code, meaning, half_life_s)
    result = assess_instance(pet_header)
    assert (result.outcome, result.code) == (Outcome.IGNORED, expected_code)
    assert words in result.reason


def test_nuclide_is_known_from_half_life_when_the_code_is_absent(pet_header: Dataset) -> None:
    drug = pet_header.RadiopharmaceuticalInformationSequence[0]
    del drug.RadionuclideCodeSequence
    assert assess_instance(pet_header).eligible
    drug.RadionuclideHalfLife = "574300"
    result = assess_instance(pet_header)
    assert (result.code, "Lu-177" in result.reason) == ("not_positron_emitter", True)


def test_positron_tracer_the_card_does_not_list_is_ignored(pet_header: Dataset) -> None:
    drug = pet_header.RadiopharmaceuticalInformationSequence[0]
    drug.Radiopharmaceutical = "Gallium Ga^68^ gozetotide (PSMA-11)"
    drug.RadionuclideCodeSequence, drug.RadionuclideHalfLife = _nuclide(
        "35337001", "^68^Gallium", 4062.6
    )
    result = assess_instance(pet_header)
    assert (result.outcome, result.code) == (Outcome.IGNORED, "tracer_not_trained")
    assert "Ga-68" in result.reason and "accepted: fdg" in result.reason
    tolerant = TracerPolicy(tolerated=frozenset({"psma"}))
    assert assess_instance(pet_header, tolerant).code == "tracer_not_trained"


def test_fdg_is_known_from_its_code_without_text(pet_header: Dataset) -> None:
    drug = pet_header.RadiopharmaceuticalInformationSequence[0]
    drug.Radiopharmaceutical = "Tracer X"
    assert assess_instance(pet_header).code == "tracer_not_trained"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator = "35321007", "SCT"
    code.CodeMeaning = "Fluorodeoxyglucose F^18^"
    drug.RadiopharmaceuticalCodeSequence = [code]
    assert assess_instance(pet_header).eligible


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("SeriesType", ["DYNAMIC", "IMAGE"]),
        ("SeriesType", ["GATED", "IMAGE"]),
        ("NumberOfTimeSlots", 8),
    ],
)
def test_dynamic_and_gated_series_are_rejected(
    pet_header: Dataset, keyword: str, value: object
) -> None:
    setattr(pet_header, keyword, value)
    result = assess_instance(pet_header)
    assert (result.outcome, result.code) == (Outcome.REJECTED, "dynamic_or_gated")
    assert "not supported yet" in result.reason


def test_derived_only_by_lossy_compression_counts_as_original(pet_header: Dataset) -> None:
    pet_header.ImageType = ["DERIVED", "PRIMARY"]
    assert assess_instance(pet_header).code == "not_original"
    pet_header.LossyImageCompression = "01"
    lossy = Dataset()
    lossy.CodeValue, lossy.CodingSchemeDesignator = "113040", "DCM"
    lossy.CodeMeaning = "Lossy Compression"
    pet_header.DerivationCodeSequence = [lossy]
    assert assess_instance(pet_header).eligible
    smoothing = Dataset()
    smoothing.CodeValue, smoothing.CodingSchemeDesignator = "113087", "DCM"
    smoothing.CodeMeaning = "Smoothing"
    pet_header.DerivationCodeSequence = [lossy, smoothing]
    assert assess_instance(pet_header).code == "not_original"
