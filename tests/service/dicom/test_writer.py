"""Tests for service.dicom.writer: derived PET series with provenance, exact SUV and stable UIDs."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pet_samples import algorithm, dciodvfy_errors, make_study
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.sr.codedict import codes
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from service.dicom import derived, pet
from service.dicom.synthetic import write_simulated_study
from service.dicom.volume import PetVolume, load_pet_volume
from service.dicom.writer import (
    DerivedSeries,
    DerivedSeriesOptions,
    stored_volume,
    write_derived_series,
)


@pytest.fixture(scope="module")
def source_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("writer")
    return write_simulated_study(make_study(seed=21, drfs=(20.0,)), root / "study")["drf20"]


@pytest.fixture(scope="module")
def source(source_paths: list[Path]) -> PetVolume:
    return load_pet_volume(source_paths)


def _denoised(source: PetVolume) -> np.ndarray:
    rng = np.random.default_rng(21)
    return (source.bqml * rng.uniform(0.8, 1.2, size=source.bqml.shape)).astype(np.float32)


@pytest.fixture(scope="module")
def written(source: PetVolume, tmp_path_factory: pytest.TempPathFactory) -> DerivedSeries:
    out = tmp_path_factory.mktemp("derived") / "series"
    return write_derived_series(source, _denoised(source), algorithm(), out, drf_estimate=18.7)


def _read_all(series: DerivedSeries) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path) for path in series.paths]


def test_pixels_round_trip_within_quantisation(source: PetVolume, written: DerivedSeries) -> None:
    output = load_pet_volume(list(written.paths))
    expected = _denoised(source)
    slopes = np.array([float(ds.RescaleSlope) for ds in output.datasets])
    error = np.abs(output.bqml - expected).max(axis=(1, 2))
    assert np.all(error <= slopes * 0.5 * (1 + 1e-6))
    assert output.positions_mm == source.positions_mm
    assert output.spacing_mm == source.spacing_mm
    assert {ds["PixelData"].VR for ds in output.datasets} == {"OW"}  # 16-bit native


def test_stored_volume_is_what_a_reader_of_the_files_gets(
    source: PetVolume, tmp_path: Path
) -> None:
    """The quality report measures ``stored_volume`` while the files are written: it must be
    the files' Bq/ml to the bit, clipped negatives and an empty slice included."""
    denoised = _denoised(source)
    denoised[0, :2, :2] = -3.0
    denoised[1] = 0.0
    series = write_derived_series(source, denoised, algorithm(), tmp_path / "stored")
    from_files = load_pet_volume(list(series.paths)).bqml
    assert from_files.dtype == stored_volume(denoised).dtype
    assert np.array_equal(stored_volume(denoised), from_files)
    assert not np.array_equal(stored_volume(denoised), denoised)  # it is quantised
    # A long volume goes in slabs: each slice as if it were quantised alone.
    tall = np.random.default_rng(3).gamma(2.0, 500.0, size=(70, 6, 5)).astype(np.float32)
    one_by_one = np.concatenate([stored_volume(tall[k : k + 1]) for k in range(len(tall))])
    assert np.array_equal(stored_volume(tall), one_by_one)


def test_headers_as_written_come_back_without_pixels(written: DerivedSeries) -> None:
    on_disk = _read_all(written)
    assert [h.SOPInstanceUID for h in written.headers] == [d.SOPInstanceUID for d in on_disk]
    assert all("PixelData" not in h for h in written.headers)
    for header, stored in zip(written.headers, on_disk, strict=True):
        assert str(header.RescaleSlope) == str(stored.RescaleSlope)
        assert header.SeriesInstanceUID == stored.SeriesInstanceUID


def test_suv_factor_is_the_same_before_and_after(source: PetVolume, written: DerivedSeries) -> None:
    for before, after in zip(source.datasets, _read_all(written), strict=True):
        assert pet.suv_bw_factor(after) == pet.suv_bw_factor(before)


def test_study_patient_and_frame_of_reference_are_kept(
    source: PetVolume, written: DerivedSeries
) -> None:
    first = source.datasets[0]
    for ds in _read_all(written):
        for keyword in (
            "StudyInstanceUID",
            "FrameOfReferenceUID",
            "PatientName",
            "PatientID",
            "AccessionNumber",
            "SeriesDate",
            "SeriesTime",
            "Units",
            "DecayCorrection",
            "CorrectedImage",
            "PatientWeight",
        ):
            assert ds.get(keyword) == first.get(keyword), keyword
        assert ds.SeriesInstanceUID == written.series_instance_uid
        assert ds.SeriesInstanceUID != first.SeriesInstanceUID
        assert ds.SeriesDescription == "PET WB simulated 1/20 dose [UniPET]"
        assert ds.SeriesNumber == first.SeriesNumber + 1000
        assert list(ds.ImageType)[:2] == ["DERIVED", "PRIMARY"]
        assert ds.Manufacturer != first.Manufacturer


def test_derivation_and_per_slice_source_references(
    source: PetVolume, written: DerivedSeries
) -> None:
    for before, after in zip(source.datasets, _read_all(written), strict=True):
        reference = after.SourceImageSequence[0]
        assert reference.ReferencedSOPInstanceUID == before.SOPInstanceUID
        assert pet.slice_position_mm(after) == pet.slice_position_mm(before)
        purpose = reference.PurposeOfReferenceCodeSequence[0]
        assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("121322", "DCM")
        derivation = after.DerivationCodeSequence[0]
        assert (derivation.CodeValue, derivation.CodingSchemeDesignator) == ("113087", "DCM")
        assert "UniPET 1.0.0" in after.DerivationDescription
        assert "18.7" in after.DerivationDescription
        series_ref = after.ReferencedSeriesSequence[0]
        assert series_ref.SeriesInstanceUID == before.SeriesInstanceUID
        assert series_ref.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == (
            before.SOPInstanceUID
        )


def test_contributing_equipment_names_the_algorithm(written: DerivedSeries) -> None:
    identity = algorithm()
    ds = _read_all(written)[0]
    items = ds.ContributingEquipmentSequence
    acquisition, processing = items[0], items[-1]
    assert acquisition.ManufacturerModelName == "SimPET 600"
    assert acquisition.PurposeOfReferenceCodeSequence[0].CodeValue == "109101"
    purpose = processing.PurposeOfReferenceCodeSequence[0]
    assert (purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning) == (
        "Newcode1",
        "99IHE",
        "Processing Algorithm",
    )
    assert processing.ManufacturerModelName == "UniPET"
    assert processing.Manufacturer == identity.manufacturer
    assert processing.DeviceUID == identity.device_uid
    assert identity.weights_sha256 in list(processing.SoftwareVersions)
    assert identity.version in list(processing.SoftwareVersions)


def test_uids_are_deterministic_and_depend_on_weights_and_parameters(
    source: PetVolume, written: DerivedSeries, tmp_path: Path
) -> None:
    denoised = _denoised(source)
    again = write_derived_series(source, denoised, algorithm(), tmp_path / "again")
    other = write_derived_series(source, denoised, algorithm("cd" * 32), tmp_path / "other")
    tuned = write_derived_series(source, denoised, algorithm(patch="64"), tmp_path / "tuned")
    assert again.series_instance_uid == written.series_instance_uid
    assert again.sop_instance_uids == written.sop_instance_uids
    for different in (other, tuned):
        assert different.series_instance_uid != written.series_instance_uid
        assert not set(different.sop_instance_uids) & set(written.sop_instance_uids)
    assert len(set(written.sop_instance_uids)) == len(source.datasets)


def test_rerun_replaces_the_same_series_and_refuses_another(
    source: PetVolume, tmp_path: Path
) -> None:
    out = tmp_path / "series"
    first = write_derived_series(source, _denoised(source), algorithm(), out)
    second = write_derived_series(source, _denoised(source), algorithm(), out)
    assert second.paths == first.paths
    assert sorted(out.iterdir()) == sorted(first.paths)
    with pytest.raises(FileExistsError, match="another series"):
        write_derived_series(source, _denoised(source), algorithm("ef" * 32), out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]


def _decoded(ds: pydicom.Dataset) -> pydicom.Dataset:
    """``ds`` with every element and nested item decoded, as code that read them leaves it."""
    ds.walk(lambda _ds, _element: None)
    return ds


def _header_bytes(source: pydicom.Dataset) -> bytes:
    context = derived.DerivationContext(
        algorithm=algorithm(),
        series_instance_uid=UID("1.2.826.0.1.3680043.8.498.1"),
        series_number=1001,
        series_description="PET [UniPET]",
        derivation_code=codes.DCM.Smoothing,
        derivation_description="Denoised",
        source_series=[source],
        now=datetime(2026, 1, 2, 3, 4, 5),
    )
    ds = derived.derived_header(source, UID("1.2.826.0.1.3680043.8.498.2"), context)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = DicomBytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_headers_copied_undecoded_are_the_headers_copied_decoded(
    source_paths: list[Path], tmp_path: Path, syntax: UID
) -> None:
    """Undecoded source elements pass into the derived header as their bytes; the written
    header must be the one that decoding and re-encoding every element writes."""
    ds = pydicom.dcmread(source_paths[0])
    # Study Description as a PACS that did not know it relays it: UN (pydicom's DataElement
    # would take the dictionary VR, so the bytes are set as they arrive).
    ds[0x00081030] = RawDataElement(Tag(0x00081030), "UN", 6, b"WB FDG", 0, False, True)
    ds.ProcedureCodeSequence = [Dataset()]
    ds.ProcedureCodeSequence[0].CodeValue = "PETWB"
    ds.ProcedureCodeSequence[0].add_new(0x00091010, "LO", "vendor")
    ds.add_new(0x00091010, "LO", "private")
    path = tmp_path / "source.dcm"
    ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)
    undecoded = pydicom.dcmread(path)
    stored_vr = undecoded.get_item(0x00081030).VR
    assert stored_vr == ("UN" if syntax == ExplicitVRLittleEndian else None)
    written = _header_bytes(undecoded)
    assert written == _header_bytes(_decoded(pydicom.dcmread(path)))
    header = pydicom.dcmread(DicomBytesIO(written))
    assert header["StudyDescription"].VR == "LO"
    assert header.StudyDescription == "WB FDG"
    assert header.ProcedureCodeSequence[0].CodeValue == "PETWB"
    assert 0x00091010 not in header


def test_sources_are_byte_identical_after_writing(source_paths: list[Path], tmp_path: Path) -> None:
    before = [hashlib.sha256(p.read_bytes()).hexdigest() for p in source_paths]
    volume = load_pet_volume(source_paths)
    write_derived_series(volume, _denoised(volume), algorithm(), tmp_path / "out")
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in source_paths] == before


def test_dciodvfy_reports_no_error_on_input_and_output(
    source_paths: list[Path], written: DerivedSeries
) -> None:
    assert dciodvfy_errors(source_paths[0]) == []
    assert dciodvfy_errors(written.paths[0]) == []


def test_negative_values_are_clipped_and_said(source: PetVolume, tmp_path: Path) -> None:
    denoised = _denoised(source)
    denoised[0, 0, :3] = -50.0
    series = write_derived_series(source, denoised, algorithm(), tmp_path / "neg")
    output = load_pet_volume(list(series.paths))
    assert np.all(output.bqml >= 0.0)
    assert "3 negative voxels set to 0" in pydicom.dcmread(series.paths[0]).DerivationDescription


def test_bad_volumes_are_refused(source: PetVolume, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shape"):
        write_derived_series(source, source.bqml[1:], algorithm(), tmp_path / "a")
    broken = source.bqml.copy()
    broken[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        write_derived_series(source, broken, algorithm(), tmp_path / "b")
    assert not any(tmp_path.iterdir())


def test_options_and_fallback_labelling(source: PetVolume, tmp_path: Path) -> None:
    fallback = algorithm().__class__(
        name="Gaussian post-filter",
        version="1",
        weights_sha256="0" * 64,
        description="Gaussian, FWHM 4 mm",
    )
    options = DerivedSeriesOptions(
        series_description_suffix=" [filtered]" + "x" * 49,
        series_number_offset=2**31 - 1,
        derivation_code=codes.DCM.GaussianBlur,
    )
    series = write_derived_series(source, source.bqml, fallback, tmp_path / "g", options=options)
    ds = pydicom.dcmread(series.paths[0])
    assert ds.ContributingEquipmentSequence[-1].ManufacturerModelName == "Gaussian post-filter"
    assert "UniPET" not in str(ds.ContributingEquipmentSequence[-1].ManufacturerModelName)
    assert ds.DerivationCodeSequence[0].CodeValue == "113088"
    assert ds.SeriesNumber == 2**31 - 1
    assert len(ds.SeriesDescription) == 64
    assert ds.SeriesDescription.endswith(" [filtered]" + "x" * 49)
    assert dciodvfy_errors(series.paths[0]) == []


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="LO"):
        DerivedSeriesOptions(series_description_suffix="x" * 65)
    with pytest.raises(ValueError, match="IS range"):
        DerivedSeriesOptions(series_number_offset=2**31)


def test_output_of_a_grown_series_replaces_the_partial_one(
    source_paths: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "series"
    early = load_pet_volume(source_paths[: len(source_paths) // 2])
    partial = write_derived_series(early, _denoised(early), algorithm(), out)
    whole_volume = load_pet_volume(source_paths)
    whole = write_derived_series(whole_volume, _denoised(whole_volume), algorithm(), out)
    assert whole.series_instance_uid == partial.series_instance_uid
    assert set(partial.sop_instance_uids) < set(whole.sop_instance_uids)
    assert sorted(out.iterdir()) == sorted(whole.paths)
