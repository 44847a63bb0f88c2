"""Compressed transfer syntaxes and vendor header variants, from the files to the output.

Each case loads a copy of one tiny series as the worker does (``load_pet_volume``), writes
the derived series with the loaded values, and compares SUV from the output headers with
SUV of the uncompressed, standard-header copy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ingest_samples import (
    bed_boundary_shift,
    compress,
    philips_counts,
    restamp,
    signed_with_per_slice_slope,
)
from pet_samples import algorithm, make_study
from pydicom import dcmread
from pydicom.uid import (
    JPEG2000,
    UID,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from service.dicom import pet
from service.dicom.synthetic import write_simulated_study
from service.dicom.volume import load_pet_volume
from service.dicom.writer import stored_volume, write_derived_series
from service.errors import PetHeaderError, PixelDecodeError


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ingest")
    write_simulated_study(make_study(seed=21, shape=(6, 32, 32), drfs=(20.0,)), root / "study")
    return root / "study" / "drf20"


def output_suv(folder: Path, out: Path) -> tuple[np.ndarray, list[Path]]:
    """SUV volume read back from the derived series written from ``folder``."""
    volume = load_pet_volume(sorted(folder.glob("*.dcm")))
    derived = write_derived_series(volume, volume.bqml, algorithm(), out)
    # What the quality report measures while the files are written: the files' values, for
    # every vendor habit and transfer syntax the input came in.
    assert np.array_equal(stored_volume(volume.bqml), load_pet_volume(list(derived.paths)).bqml)
    slices = [dcmread(path) for path in derived.paths]
    suv = np.stack([d.pixel_array * float(d.RescaleSlope) * pet.suv_bw_factor(d) for d in slices])
    return suv, list(derived.paths)


@pytest.fixture(scope="module")
def reference_suv(source: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return output_suv(source, tmp_path_factory.mktemp("ref") / "out")[0]


@pytest.mark.parametrize(
    ("syntax", "lossy_method"),
    [
        (JPEGLSLossless, None),
        (JPEGLosslessSV1, None),
        (RLELossless, None),
        (JPEG2000Lossless, None),
        (JPEGLSNearLossless, "ISO_14495_1"),
        (JPEG2000, "ISO_15444_1"),
    ],
)
def test_compressed_input_decodes_with_the_suv_of_the_uncompressed_path(
    source: Path, reference_suv: np.ndarray, tmp_path: Path, syntax: UID, lossy_method: str | None
) -> None:
    copy = restamp(source, tmp_path / "in", syntax.keyword)
    compress(copy, syntax)
    assert str(dcmread(next(copy.glob("*.dcm"))).file_meta.TransferSyntaxUID) == syntax
    suv, paths = output_suv(copy, tmp_path / "out")
    scale = float(reference_suv.max())
    out = dcmread(paths[0])
    if lossy_method is None:
        assert np.max(np.abs(suv - reference_suv)) <= 1e-4 * scale
        assert "LossyImageCompression" not in out
    else:
        assert np.mean(np.abs(suv - reference_suv)) <= 0.02 * scale
        assert out.LossyImageCompression == "01"
        assert lossy_method in list(np.atleast_1d(out.LossyImageCompressionMethod))
        assert float(np.atleast_1d(out.LossyImageCompressionRatio)[-1]) > 1.0


def test_a_frame_that_does_not_decode_names_the_transfer_syntax(
    source: Path, tmp_path: Path
) -> None:
    copy = restamp(source, tmp_path / "in", "broken-jls")
    compress(copy, JPEGLSLossless)
    path = sorted(copy.glob("*.dcm"))[2]
    ds = dcmread(path)
    data = bytearray(ds.PixelData)
    data[24:] = bytes(len(data) - 24)  # keep the item structure, ruin the codestream
    ds.PixelData = bytes(data)
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(PixelDecodeError, match="JPEG-LS Lossless Image Compression"):
        load_pet_volume(sorted(copy.glob("*.dcm")))


def test_bed_boundary_spacing_within_ten_percent_keeps_input_positions(
    source: Path, reference_suv: np.ndarray, tmp_path: Path
) -> None:
    copy = restamp(source, tmp_path / "in", "bed", bed_boundary_shift(0.1, 3))
    suv, paths = output_suv(copy, tmp_path / "out")
    inputs = sorted(pet.slice_position_mm(dcmread(p)) for p in copy.glob("*.dcm"))
    outputs = sorted(pet.slice_position_mm(dcmread(p)) for p in paths)
    assert outputs == pytest.approx(inputs, abs=1e-6)
    assert len(set(np.round(np.diff(outputs), 3))) == 2
    assert np.max(np.abs(suv - reference_suv)) <= 1e-4 * float(reference_suv.max())


def test_spacing_beyond_ten_percent_is_refused(source: Path, tmp_path: Path) -> None:
    copy = restamp(source, tmp_path / "in", "gap", bed_boundary_shift(0.5, 3))
    with pytest.raises(PetHeaderError, match=r"uneven slice spacing.*10%"):
        load_pet_volume(sorted(copy.glob("*.dcm")))


def test_signed_pixels_with_per_slice_slope(
    source: Path, reference_suv: np.ndarray, tmp_path: Path
) -> None:
    copy = restamp(source, tmp_path / "in", "signed", signed_with_per_slice_slope)
    assert dcmread(next(copy.glob("*.dcm"))).PixelRepresentation == 1
    suv, _ = output_suv(copy, tmp_path / "out")
    assert np.max(np.abs(suv - reference_suv)) <= 1e-4 * float(reference_suv.max())


def test_philips_counts_become_bqml_with_the_same_suv(
    source: Path, reference_suv: np.ndarray, tmp_path: Path
) -> None:
    copy = restamp(source, tmp_path / "in", "cnts", philips_counts(2.5))
    assert dcmread(next(copy.glob("*.dcm"))).Units == "CNTS"
    suv, paths = output_suv(copy, tmp_path / "out")
    assert dcmread(paths[0]).Units == "BQML"
    assert np.max(np.abs(suv - reference_suv)) <= 1e-4 * float(reference_suv.max())


@pytest.mark.parametrize(
    ("keyword", "value", "message"),
    [("Units", "GML", "inconsistent Units"), ("Rows", 4, "inconsistent matrix")],
)
def test_slices_that_disagree_are_refused(
    source: Path, tmp_path: Path, keyword: str, value: object, message: str
) -> None:
    def mutate(ds, index: int) -> None:  # type: ignore[no-untyped-def]
        if index == 1:
            setattr(ds, keyword, value)

    copy = restamp(source, tmp_path / "in", f"bad-{keyword}", mutate)
    with pytest.raises(PetHeaderError, match=message):
        load_pet_volume(sorted(copy.glob("*.dcm")))
