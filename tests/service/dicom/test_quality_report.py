"""Tests for the quality report: numbers (quality), SR (report_sr), PDF (report_pdf/document)."""

from __future__ import annotations

import copy
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pet_samples import algorithm, dciodvfy_errors, make_study
from scipy import ndimage

from model.simulate import simulate_study
from model.simulate.types import SimulatedStudy
from service.dicom import pet
from service.dicom.card_facts import OUTSIDE_TRAINED_RANGE, TrainedRanges
from service.dicom.quality import (
    FOCUS_RADIUS_MM,
    PEAK_RADIUS_MM,
    BodyBox,
    ModelCardFacts,
    ReferenceMethod,
    assess_quality,
)
from service.dicom.report import (
    QualityReportFiles,
    read_summary,
    report_dir,
    write_quality_report,
)
from service.dicom.report_identity import ReportTimes
from service.dicom.synthetic import write_simulated_study
from service.dicom.volume import PetVolume, load_pet_volume
from service.dicom.writer import DerivedSeries, write_derived_series

SHAPE = (20, 24, 24)
LESION = (12, 9, 15)  # (slice, row, column): off-centre, so a mix-up of axes shows
# The lesion study's voxels are 3 mm slices of 4 mm pixels, FDG: inside these ranges.
CARD = ModelCardFacts(
    "research; not for diagnosis",
    TrainedRanges(
        drf=(4.0, 100.0), pixel_mm=(3.6, 5.0), slice_mm=(3.0, 6.0), tracers=frozenset({"fdg"})
    ),
)
TIMES = ReportTimes(1.7e9, 1.7e9 + 30, 2.5, 1.7e9 + 40)


def _lesion_study() -> SimulatedStudy:
    """A warm body with one small hot sphere at LESION, noisy at DRF 20."""
    study = make_study(seed=5, shape=SHAPE, drfs=(20.0,))
    z, y, x = np.indices(SHAPE)
    body = ((z - 9.5) / 11) ** 2 + ((y - 11.5) / 10) ** 2 + ((x - 11.5) / 10) ** 2 < 1.0
    lesion = (z - LESION[0]) ** 2 + (y - LESION[1]) ** 2 + (x - LESION[2]) ** 2 <= 1
    full = np.where(body, 5000.0, 0.0) + np.where(lesion, 40000.0, 0.0)
    rng = np.random.default_rng(5)
    low = np.clip(full * rng.normal(1.0, 0.15, size=SHAPE), 0, None).astype(np.float32)
    return replace(
        study,
        full_dose_bqml=full.astype(np.float32),
        truth_bqml=full.astype(np.float32),
        low_dose_bqml={20.0: low},
        organ_labels=body.astype(np.int16),
        lesion_labels=lesion.astype(np.int16),
    )


@pytest.fixture(scope="module")
def received(tmp_path_factory: pytest.TempPathFactory) -> PetVolume:
    root = tmp_path_factory.mktemp("quality")
    return load_pet_volume(write_simulated_study(_lesion_study(), root / "study")["drf20"])


@pytest.fixture(scope="module")
def derived(received: PetVolume, tmp_path_factory: pytest.TempPathFactory) -> DerivedSeries:
    smoothed = ndimage.gaussian_filter(received.bqml, 0.8) - 20.0  # some voxels go negative
    out = tmp_path_factory.mktemp("derived") / "series"
    return write_derived_series(received, smoothed, algorithm(), out, drf_estimate=18.0)


def _write(received: PetVolume, derived: DerivedSeries) -> QualityReportFiles:
    return write_quality_report(
        received,
        derived.paths,
        algorithm(),
        report_dir(derived.directory),
        drf_estimate=18.0,
        clipped_voxels=7,
        card=CARD,
        times=TIMES,
        change_limit_pct=10.0,
    )


@pytest.fixture(scope="module")
def files(received: PetVolume, derived: DerivedSeries) -> QualityReportFiles:
    return _write(received, derived)


def test_hottest_focus_is_at_the_lesion(files: QualityReportFiles) -> None:
    top = files.report.foci[0]
    assert max(abs(a - b) for a, b in zip(top.sphere.index, LESION, strict=True)) <= 1
    assert top.suvmax_before > 3 * files.report.reference.mean_before
    # Patient coordinates (simulated geometry: volume centred on the origin, LPS axes)
    dz, dy, dx = 3.0, 4.0, 4.0
    k, j, i = top.sphere.index
    expected = ((i - 11.5) * dx, (j - 11.5) * dy, (k - 9.5) * dz)
    assert top.sphere.centre_mm == pytest.approx(expected)


def test_no_liver_in_a_plain_body_says_so(files: QualityReportFiles) -> None:
    assert files.report.reference.method is ReferenceMethod.HOMOGENEOUS
    assert files.report.reference.cov_after_pct < files.report.reference.cov_before_pct


def test_sr_and_pdf_pass_dciodvfy(files: QualityReportFiles) -> None:
    assert dciodvfy_errors(files.sr_path) == []
    assert dciodvfy_errors(files.pdf_instance_path) == []


def _groups(sr: pydicom.Dataset) -> dict[str, dict[str, object]]:
    """Tracking identifier -> {derivation meaning: value, "points": ellipsoid points}."""
    imaging = next(
        item
        for item in sr.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeMeaning == "Imaging Measurements"
    )
    groups: dict[str, dict[str, object]] = {}
    for group in imaging.ContentSequence:
        values: dict[str, object] = {}
        for item in group.ContentSequence:
            meaning = item.ConceptNameCodeSequence[0].CodeMeaning
            if meaning == "Tracking Identifier":
                name = str(item.TextValue)
            if item.ValueType == "NUM":
                assert item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue == (
                    "{SUVbw}g/ml"
                )
                derivation = next(
                    m.ConceptCodeSequence[0].CodeMeaning
                    for m in item.ContentSequence
                    if m.ConceptNameCodeSequence[0].CodeMeaning == "Derivation"
                )
                values[derivation] = float(item.MeasuredValueSequence[0].NumericValue)
                scoord = next(m for m in item.ContentSequence if m.ValueType == "SCOORD3D")
                values["points"] = np.asarray(scoord.GraphicData, dtype=float).reshape(-1, 3)
                values["frame_of_reference"] = scoord.ReferencedFrameOfReferenceUID
        groups[name] = values
    return groups


def _voxel_of(volume: PetVolume, point_mm: np.ndarray) -> tuple[int, int, int]:
    """Voxel index of a patient point on an axial grid (IOP 1\\0\\0\\0\\1\\0)."""
    ds0 = volume.datasets[0]
    x0, y0, _ = (float(v) for v in ds0.ImagePositionPatient)
    dy, dx = (float(v) for v in ds0.PixelSpacing)
    k = int(np.argmin(np.abs(np.asarray(volume.positions_mm) - point_mm[2])))
    return k, round((point_mm[1] - y0) / dy), round((point_mm[0] - x0) / dx)


def _ball_values(suv: np.ndarray, centre: tuple[int, ...], radius: float, spacing) -> np.ndarray:  # type: ignore[no-untyped-def]
    grid = np.indices(suv.shape)
    distance_sq = sum(((grid[a] - centre[a]) * spacing[a]) ** 2 for a in range(3))
    return np.asarray(suv[distance_sq <= radius**2 + 1e-9])


def _own_focus_values(suv: np.ndarray, centre, spacing) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """SUVmax and SUVpeak by brute force from the words in the module docstring."""
    grid = np.indices(suv.shape)
    distance_sq = sum(((grid[a] - centre[a]) * spacing[a]) ** 2 for a in range(3))
    inside = np.argwhere(distance_sq <= FOCUS_RADIUS_MM**2 + 1e-9)
    peak = max(_ball_values(suv, tuple(v), PEAK_RADIUS_MM, spacing).mean() for v in inside)
    return float(suv[distance_sq <= FOCUS_RADIUS_MM**2 + 1e-9].max()), float(peak)


def test_sr_focus_table_matches_values_computed_from_the_volumes(
    files: QualityReportFiles, received: PetVolume, derived: DerivedSeries
) -> None:
    output = load_pet_volume(list(derived.paths))
    factor = pet.suv_bw_factor(received.datasets[0])
    assert pet.suv_bw_factor(output.datasets[0]) == factor
    volumes = {"received": received.bqml * factor, "derived": output.bqml * factor}
    groups = _groups(pydicom.dcmread(files.sr_path))
    foci = [name for name in groups if name.startswith("Focus")]
    assert len(foci) == 2 * len(files.report.foci) > 0
    for name in foci:
        values = groups[name]
        points = values["points"]
        assert isinstance(points, np.ndarray)
        centre = _voxel_of(received, points.mean(axis=0))
        radius = float(np.linalg.norm(points[1] - points[0]) / 2)
        assert radius == pytest.approx(FOCUS_RADIUS_MM)
        which = "received" if name.endswith("received series") else "derived"
        suvmax, suvpeak = _own_focus_values(volumes[which], centre, received.spacing_mm)
        assert values["Maximum"] == pytest.approx(suvmax, rel=1e-5)
        assert values["Peak Value Within ROI"] == pytest.approx(suvpeak, rel=1e-5)
        assert values["frame_of_reference"] == received.datasets[0].FrameOfReferenceUID


def test_sr_reference_region_before_and_after_are_separate_groups(
    files: QualityReportFiles, received: PetVolume, derived: DerivedSeries
) -> None:
    groups = _groups(pydicom.dcmread(files.sr_path))
    reference = {k: v for k, v in groups.items() if k.startswith("Reference region")}
    assert len(reference) == 2
    ref = files.report.reference
    before = next(v for k, v in reference.items() if k.endswith("received series"))
    after = next(v for k, v in reference.items() if k.endswith("derived series"))
    assert before["Mean"] == pytest.approx(ref.mean_before, rel=1e-6)
    assert after["Standard Deviation"] == pytest.approx(ref.sd_after, rel=1e-6)
    factor = pet.suv_bw_factor(received.datasets[0])
    centre = _voxel_of(received, np.asarray(before["points"]).mean(axis=0))
    own = _ball_values(received.bqml * factor, centre, ref.sphere.radius_mm, received.spacing_mm)
    assert before["Mean"] == pytest.approx(float(own.mean()), rel=1e-5)


def test_reports_share_patient_study_and_equipment_with_the_images(
    files: QualityReportFiles, derived: DerivedSeries
) -> None:
    image = pydicom.dcmread(derived.paths[0], stop_before_pixels=True)
    for path in files.dicom_paths:
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == image.StudyInstanceUID
        assert ds.PatientID == image.PatientID
        assert ds.SeriesInstanceUID != image.SeriesInstanceUID
        assert ds.ContributingEquipmentSequence == image.ContributingEquipmentSequence


def test_report_uids_are_the_same_when_the_series_is_written_again(
    files: QualityReportFiles, received: PetVolume, derived: DerivedSeries
) -> None:
    first = [pydicom.dcmread(p) for p in files.dicom_paths]
    again = _write(received, derived)
    second = [pydicom.dcmread(p) for p in again.dicom_paths]
    for a, b in zip(first, second, strict=True):
        assert (a.SOPInstanceUID, a.SeriesInstanceUID) == (b.SOPInstanceUID, b.SeriesInstanceUID)


def test_pdf_renders_and_is_the_encapsulated_document(
    files: QualityReportFiles, tmp_path: Path
) -> None:
    ds = pydicom.dcmread(files.pdf_instance_path)
    pdf = bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)]
    assert pdf == files.pdf_path.read_bytes()
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    subprocess.run(
        ["/usr/bin/pdftoppm", "-png", "-r", "30", str(files.pdf_path), str(tmp_path / "page")],
        check=True,
        timeout=60,
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 2
    assert all(page.stat().st_size > 5000 for page in pages)


def test_changes_beyond_the_limit_are_flagged(received: PetVolume) -> None:
    halved = received.bqml * 0.5
    report = assess_quality(
        received.bqml, halved, received.datasets, received.spacing_mm, drf_estimate=None, card=None
    )
    assert report.flagged_foci == len(report.foci) > 0
    same = assess_quality(
        received.bqml,
        received.bqml,
        received.datasets,
        received.spacing_mm,
        drf_estimate=None,
        card=None,
    )
    assert same.flagged_foci == 0


def test_dose_check_reads_activity_per_kg_and_frame_duration(files: QualityReportFiles) -> None:
    dose = files.report.dose
    assert dose.injected_mbq_per_kg == pytest.approx(320.0 / 72.5)
    assert dose.frame_duration_s == pytest.approx(120.0)
    # The simulated headers claim a full FDG dose: about 1, outside the trained 4-100.
    assert dose.header_drf is not None and dose.header_drf < 2.0
    assert dose.in_range(dose.header_drf) is False
    assert dose.in_range(dose.drf_estimate) is True


def test_liver_of_a_simulated_phantom_is_the_reference_region(tmp_path: Path) -> None:
    study = simulate_study(seed=7, drfs=[20.0], size="tiny")
    volume = load_pet_volume(write_simulated_study(study, tmp_path / "sim")["drf20"])
    report = assess_quality(
        volume.bqml, volume.bqml, volume.datasets, volume.spacing_mm, drf_estimate=None, card=None
    )
    assert report.reference.method is ReferenceMethod.LIVER
    liver = 8  # model.simulate.phantom.ORGAN_LABELS["liver"]
    assert study.organ_labels[report.reference.sphere.index] == liver


def test_the_report_says_whether_the_input_lies_in_the_trained_ranges(
    files: QualityReportFiles, received: PetVolume
) -> None:
    inside = files.report.trained_range
    assert inside.checked and not inside.outside
    summary = read_summary(files.directory)
    assert summary is not None and summary["trained_range"] == ""
    coarse = replace(CARD, ranges=replace(CARD.ranges, pixel_mm=(5.0, 6.0), drf=(30.0, 100.0)))
    report = assess_quality(
        received.bqml,
        received.bqml,
        received.datasets,
        received.spacing_mm,
        drf_estimate=18.0,
        card=coarse,
    )
    assert report.trained_range.note == (
        f"{OUTSIDE_TRAINED_RANGE}: DRF estimate 18 < 30; pixel 4 mm < 5 mm"
    )
    assert report.summary()["trained_range"] == report.trained_range.note
    # The dose check's DRF verdict is the range check's: both say the estimate is outside.
    assert report.dose.in_range(report.dose.drf_estimate) is False
    unchecked = assess_quality(
        received.bqml,
        received.bqml,
        received.datasets,
        received.spacing_mm,
        drf_estimate=18.0,
        card=None,
    )
    assert not unchecked.trained_range.checked and unchecked.summary()["trained_range"] == ""


def _padded(volume: PetVolume, pad: int) -> tuple[np.ndarray, list[pydicom.Dataset]]:
    """The volume with ``pad`` columns and rows of air on each side, headers moved to match."""
    bqml = np.pad(volume.bqml, ((0, 0), (pad, pad), (pad, pad)))
    datasets = []
    for ds in volume.datasets:
        moved = copy.deepcopy(ds)
        row_direction, column_direction = pet.image_orientation(ds)
        row_mm, column_mm = (float(v) for v in ds.PixelSpacing)
        origin = np.asarray([float(v) for v in ds.ImagePositionPatient])
        moved.ImagePositionPatient = list(
            origin - row_direction * pad * column_mm - column_direction * pad * row_mm
        )
        datasets.append(moved)
    return bqml, datasets


def test_air_around_the_body_changes_nothing_but_is_not_measured(tmp_path: Path) -> None:
    study = simulate_study(seed=7, drfs=[20.0], size="tiny")
    volume = load_pet_volume(write_simulated_study(study, tmp_path / "sim")["drf20"])
    smoothed = volume.bqml * 0.9
    reports = []
    for pad in (4, 40):
        bqml, datasets = _padded(volume, pad)
        derived = np.pad(smoothed, ((0, 0), (pad, pad), (pad, pad)))
        reports.append(
            assess_quality(bqml, derived, datasets, volume.spacing_mm, drf_estimate=None, card=None)
        )
        box = BodyBox.around(bqml, derived, pet.suv_bw_factor(datasets[0]), volume.spacing_mm)
        if pad == 40:  # the body and a sphere's margin, not 40 voxels of air on each side
            assert box.stop[1] - box.start[1] < bqml.shape[1] - 60
    near, far = reports
    assert far.reference.sphere.centre_mm == pytest.approx(near.reference.sphere.centre_mm)
    assert far.reference.mean_before == pytest.approx(near.reference.mean_before)
    assert far.reference.sd_after == pytest.approx(near.reference.sd_after)
    assert len(far.foci) == len(near.foci) > 3
    for a, b in zip(far.foci, near.foci, strict=True):
        assert a.sphere.centre_mm == pytest.approx(b.sphere.centre_mm)
        assert (a.suvmax_before, a.suvpeak_after) == pytest.approx(
            (b.suvmax_before, b.suvpeak_after)
        )
