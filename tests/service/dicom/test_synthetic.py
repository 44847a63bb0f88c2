"""Tests for service.dicom.synthetic: a simulated study as valid, loadable, quantitative DICOM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pet_samples import dciodvfy_errors, make_study

from service.dicom import pet
from service.dicom.synthetic import format_drf, write_simulated_study
from service.dicom.volume import load_pet_volume


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return write_simulated_study(make_study(seed=3), tmp_path_factory.mktemp("sim") / "study")


@pytest.mark.parametrize(
    ("drf", "text"), [(20.0, "20"), (20, "20"), (7.5, "7.5"), (100.25, "100.25")]
)
def test_format_drf(drf: float, text: str) -> None:
    assert format_drf(drf) == text


def test_one_folder_per_dose_level(written: dict[str, list[Path]]) -> None:
    assert set(written) == {"full", "drf20", "drf7.5"}
    assert all(len(paths) == 6 for paths in written.values())
    assert all(path.parent.name == key for key, paths in written.items() for path in paths)


def test_every_series_in_one_study_with_shared_geometry(written: dict[str, list[Path]]) -> None:
    firsts = {key: pydicom.dcmread(paths[0]) for key, paths in written.items()}
    for attribute in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "PatientName"):
        assert len({str(ds.get(attribute)) for ds in firsts.values()}) == 1, attribute
    assert len({ds.SeriesInstanceUID for ds in firsts.values()}) == 3
    assert firsts["full"].SeriesDescription == "PET WB simulated full dose"
    assert firsts["drf7.5"].SeriesDescription == "PET WB simulated 1/7.5 dose"
    assert str(firsts["full"].PatientName) == "SIMULATED^PHANTOM3"
    full = firsts["full"]
    assert full.SOPClassUID == pydicom.uid.PositronEmissionTomographyImageStorage
    assert list(full.ImageType) == ["ORIGINAL", "PRIMARY"]
    assert (
        full.RadiopharmaceuticalInformationSequence[0].RadionuclideCodeSequence[0].CodeValue
        == "77004003"
    )


def test_volumes_round_trip_within_quantisation(written: dict[str, list[Path]]) -> None:
    study = make_study(seed=3)
    for key, expected in [("full", study.full_dose_bqml), ("drf20", study.low_dose_bqml[20.0])]:
        volume = load_pet_volume(written[key])
        slopes = np.array([float(ds.RescaleSlope) for ds in volume.datasets])
        error = np.abs(volume.bqml - expected).max(axis=(1, 2))
        assert np.all(error <= slopes * 0.5 + 1e-3), key
        assert volume.spacing_mm == pytest.approx(study.spacing_mm)


def test_suv_factor_equals_the_simulation(written: dict[str, list[Path]]) -> None:
    study = make_study(seed=3)
    for paths in written.values():
        for path in paths:
            factor = pet.suv_bw_factor(pydicom.dcmread(path, stop_before_pixels=True))
            assert factor == pytest.approx(study.suv_per_bqml, rel=1e-9)


def test_dciodvfy_reports_no_error(written: dict[str, list[Path]]) -> None:
    for paths in written.values():
        assert dciodvfy_errors(paths[0]) == []


def test_uids_are_deterministic_by_seed(tmp_path: Path) -> None:
    again = write_simulated_study(make_study(seed=3, drfs=(20.0,)), tmp_path / "a")
    other = write_simulated_study(make_study(seed=4, drfs=(20.0,)), tmp_path / "b")
    same = write_simulated_study(make_study(seed=3, drfs=(20.0,)), tmp_path / "c")
    uids = [pydicom.dcmread(w["drf20"][0]).SOPInstanceUID for w in (again, other, same)]
    assert uids[0] == uids[2]
    assert uids[0] != uids[1]


def test_existing_series_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    with pytest.raises(FileExistsError, match="full"):
        write_simulated_study(make_study(), tmp_path)


def test_model_simulation_writes_and_reloads(tmp_path: Path) -> None:
    simulate = pytest.importorskip("model.simulate").simulate_study
    study = simulate(1, [20.0], size="tiny")
    written = write_simulated_study(study, tmp_path)
    volume = load_pet_volume(written["drf20"])
    assert volume.bqml.shape == study.full_dose_bqml.shape
    peak = float(study.low_dose_bqml[20.0].max())
    assert np.allclose(volume.bqml, study.low_dose_bqml[20.0], atol=peak / 65535.0)
    assert pet.suv_bw_factor(volume.datasets[0]) == pytest.approx(study.suv_per_bqml, rel=1e-9)
