"""Tests for service.dicom.volume: sorting, rescaling and consistency checks of a PET series."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pet_samples import make_study

from service.dicom.synthetic import write_simulated_study
from service.dicom.volume import load_pet_volume
from service.errors import PetHeaderError


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return write_simulated_study(make_study(seed=5), tmp_path_factory.mktemp("vol") / "study")


def test_slices_sorted_feet_to_head_whatever_the_file_order(
    written: dict[str, list[Path]],
) -> None:
    paths = list(written["full"])
    random.Random(7).shuffle(paths)
    volume = load_pet_volume(paths)
    assert list(volume.positions_mm) == sorted(volume.positions_mm)
    assert volume.positions_mm[1] - volume.positions_mm[0] == pytest.approx(3.0)
    assert volume.spacing_mm == pytest.approx((3.0, 4.0, 4.0))
    assert volume.bqml.dtype == np.float32
    assert volume.bqml.shape == (6, 8, 10)
    expected = make_study(seed=5).full_dose_bqml
    assert np.allclose(volume.bqml, expected, atol=float(expected.max()) / 65535.0)
    assert volume.series_instance_uid == str(volume.datasets[0].SeriesInstanceUID)


def test_rescale_is_per_slice(written: dict[str, list[Path]]) -> None:
    volume = load_pet_volume(written["full"])
    slopes = {float(ds.RescaleSlope) for ds in volume.datasets}
    assert len(slopes) > 1
    for index, ds in enumerate(volume.datasets):
        stored = ds.pixel_array.astype(np.float64)
        assert np.allclose(volume.bqml[index], stored * float(ds.RescaleSlope), rtol=1e-6)


def test_mixed_series_are_refused(written: dict[str, list[Path]]) -> None:
    with pytest.raises(PetHeaderError, match="mixed series"):
        load_pet_volume([*written["full"][:3], *written["drf20"][3:]])


def _rewrite(source: Path, target: Path, **changes: object) -> Path:
    ds = pydicom.dcmread(source)
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.save_as(target, enforce_file_format=True)
    return target


def test_duplicate_positions_are_refused(written: dict[str, list[Path]], tmp_path: Path) -> None:
    copy = _rewrite(written["full"][0], tmp_path / "copy.dcm", SOPInstanceUID="1.2.3.4")
    with pytest.raises(PetHeaderError, match="duplicate slice position"):
        load_pet_volume([*written["full"], copy])


def test_inconsistent_orientation_is_refused(
    written: dict[str, list[Path]], tmp_path: Path
) -> None:
    odd = _rewrite(
        written["full"][2], tmp_path / "odd.dcm", ImageOrientationPatient=[0, 1, 0, 1, 0, 0]
    )
    with pytest.raises(PetHeaderError, match="orientation"):
        load_pet_volume([*written["full"][:2], odd, *written["full"][3:]])


def test_inconsistent_matrix_is_refused(written: dict[str, list[Path]], tmp_path: Path) -> None:
    ds = pydicom.dcmread(written["full"][1])
    ds.Rows = 4
    ds.PixelData = ds.PixelData[: 4 * 10 * 2]
    ds.save_as(tmp_path / "small.dcm", enforce_file_format=True)
    with pytest.raises(PetHeaderError, match="inconsistent matrix"):
        load_pet_volume([written["full"][0], tmp_path / "small.dcm", *written["full"][2:]])


def test_no_paths_and_non_dicom_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PetHeaderError, match="no slices"):
        load_pet_volume([])
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom")
    with pytest.raises(PetHeaderError, match=r"cannot read junk\.dcm"):
        load_pet_volume([junk])
