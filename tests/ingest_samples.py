"""Copies of a small PET series as scanners and archives send them: compressed, vendor headers.

Each copy gets its own Series and SOP Instance UIDs (derived from the source ones and the
variant name), so several variants of one study can go through one node side by side.
Compression uses the tools a site has: dcmtk (dcmcjpls, dcmcjpeg, dcmcrle) and pydicom's
encoders from PyPI wheels (pylibjpeg-openjpeg for JPEG 2000).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
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
from service.dicom.uids import derived_uid
from service.ops.dcmtk import dcmtk_env

Mutation = Callable[[Dataset, int], None]

#: dcmtk command line per syntax (dcmtk cannot encode JPEG 2000).
DCMTK_ENCODERS: dict[UID, list[str]] = {
    JPEGLSLossless: ["/usr/bin/dcmcjpls", "+el"],
    JPEGLSNearLossless: ["/usr/bin/dcmcjpls", "+en"],
    JPEGLosslessSV1: ["/usr/bin/dcmcjpeg", "+e1"],
    RLELossless: ["/usr/bin/dcmcrle"],
}
#: pydicom encoder keyword arguments per syntax (pylibjpeg-openjpeg).
PYDICOM_ENCODERS: dict[UID, dict[str, object]] = {
    JPEG2000Lossless: {},
    JPEG2000: {"j2k_cr": [5]},
}


def restamp(
    source: Path,
    target: Path,
    variant: str,
    mutate: Mutation | None = None,
    limit: int | None = None,
) -> Path:
    """Copy the series in ``source`` to ``target`` with new UIDs and ``mutate`` applied.

    ``mutate(ds, index)`` gets each slice (pixels decoded if it needs them) and its index
    in file-name order; ``limit`` keeps only the first slices.
    """
    target.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(sorted(source.glob("*.dcm"))[:limit]):
        ds = dcmread(path)
        ds.SeriesInstanceUID = derived_uid("ingest-variant-series", variant, ds.SeriesInstanceUID)
        ds.SOPInstanceUID = derived_uid("ingest-variant-instance", variant, ds.SOPInstanceUID)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription = f"{ds.get('SeriesDescription', '')} {variant}"[:64]
        if mutate is not None:
            mutate(ds, index)
        ds.save_as(target / f"{index + 1:04d}.dcm", enforce_file_format=True)
    return target


def compress(folder: Path, syntax: UID) -> None:
    """Re-encode every file in ``folder`` to ``syntax`` in place (dcmtk, else pydicom)."""
    for path in sorted(folder.glob("*.dcm")):
        if syntax in DCMTK_ENCODERS:
            subprocess.run(
                [*DCMTK_ENCODERS[syntax], str(path), str(path)],
                env=dcmtk_env(),
                check=True,
                capture_output=True,
                timeout=60,
            )
        else:
            ds = dcmread(path)
            ds.compress(syntax, generate_instance_uid=False, **PYDICOM_ENCODERS[syntax])  # type: ignore[arg-type]
            ds.save_as(path, enforce_file_format=True)


def signed_with_per_slice_slope(ds: Dataset, index: int) -> None:
    """Store the slice as signed 16-bit with its own slope and an odd maximum (GE, UIH habit)."""
    bqml = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope)
    slope = max(float(bqml.max()), 1.0) / (32767.0 - 7 * index)
    ds.PixelData = np.rint(bqml / slope).astype("<i2").tobytes()
    ds.PixelRepresentation = 1
    ds.RescaleSlope = f"{slope:.10g}"


def philips_counts(scale_bqml_per_count: float) -> Mutation:
    """Units CNTS with the Philips private factors, values unchanged in Bq/ml terms."""

    def mutate(ds: Dataset, _index: int) -> None:
        suv_per_count = scale_bqml_per_count * pet.suv_bw_factor(ds)
        ds.RescaleSlope = f"{float(ds.RescaleSlope) / scale_bqml_per_count:.10g}"
        ds.Units = pet.UNITS_CNTS
        block = ds.private_block(pet.PHILIPS_PRIVATE_GROUP, pet.PHILIPS_PRIVATE_CREATOR, True)
        block.add_new(pet.PHILIPS_SUV_SCALE_OFFSET, "DS", f"{suv_per_count:.10g}")
        block.add_new(pet.PHILIPS_ACTIVITY_SCALE_OFFSET, "DS", f"{scale_bqml_per_count:.10g}")

    return mutate


def bed_boundary_shift(shift_mm: float, from_index: int) -> Mutation:
    """Move the slices from ``from_index`` on by ``shift_mm`` (a bed overlap rounding)."""

    def mutate(ds: Dataset, index: int) -> None:
        if index >= from_index:
            x, y, z = (float(v) for v in ds.ImagePositionPatient)
            ds.ImagePositionPatient = [x, y, z + shift_mm]

    return mutate


def copy_folder(source: Path, target: Path) -> Path:
    """Plain copy (the uncompressed, standard-header reference)."""
    shutil.copytree(source, target)
    return target
