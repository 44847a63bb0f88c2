"""Load one received PET series into a Bq/ml volume with its geometry.

Slices are sorted by their position along the plane normal (ImagePositionPatient projected
on the normal of ImageOrientationPatient, PS3.3 C.7.6.2.1.1), so axis 0 runs feet to head for
axial slices, the same convention as the simulation. For ImageOrientationPatient
1\\0\\0\\0\\1\\0 the row index grows towards +Y (posterior) and the column index towards +X
(patient left). Each slice is rescaled with its own RescaleSlope/Intercept: PET stores a
different slope per slice (PS3.3 C.8.9.4.1.3), and Philips CNTS is converted to Bq/ml with
``pet.activity_scale``. Compressed Pixel Data is decoded here, in the worker, by pydicom's
pixel plugins (pylibjpeg with its libjpeg, openjpeg and rle back ends); a frame that does not
decode raises ``PixelDecodeError`` naming its transfer syntax.

Multi-bed whole-body scans overlap beds, so the spacing at a bed boundary differs from the
nominal by a tenth of a millimetre or so; steps within 10 % of the median step are accepted
(the derived series keeps each slice at its input position, and the model is given the
mean step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import structlog
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from service.dicom import pet
from service.errors import PetHeaderError, PixelDecodeError

__all__ = ["PetVolume", "load_pet_volume"]

log = structlog.stdlib.get_logger(__name__)

# Two slices closer than this along the normal are the same position.
_DUPLICATE_POSITION_MM = 1e-3
# Steps between neighbours may differ from the median step by this fraction of it.
SPACING_TOLERANCE_FRACTION = 0.10
_ORIENTATION_TOLERANCE = 1e-4


@dataclass(frozen=True)
class PetVolume:
    """A PET series as a volume: headers sorted feet to head and Bq/ml values.

    Attributes:
        datasets: One dataset per slice, sorted by slice position ascending; pixel data kept.
        bqml: Activity concentration, shape (z, y, x), float32, after per-slice rescale.
        spacing_mm: (slice spacing from positions, row spacing, column spacing).
        positions_mm: Slice positions along the plane normal, ascending, one per slice.
    """

    datasets: list[Dataset]
    bqml: npt.NDArray[np.float32]
    spacing_mm: tuple[float, float, float]
    positions_mm: tuple[float, ...]

    @property
    def series_instance_uid(self) -> str:
        """SeriesInstanceUID shared by every slice."""
        return str(self.datasets[0].SeriesInstanceUID)


def _read(path: Path) -> Dataset:
    try:
        return pydicom.dcmread(path)
    except (InvalidDicomError, OSError) as exc:
        raise PetHeaderError(f"cannot read {path.name}: {exc}") from exc


def _check_consistent(datasets: Sequence[Dataset]) -> None:
    """Raise PetHeaderError unless all slices belong to one series with one geometry."""
    first = datasets[0]
    orientation = pet.image_orientation(first)
    for ds in datasets[1:]:
        if ds.get("SeriesInstanceUID") != first.get("SeriesInstanceUID"):
            raise PetHeaderError(
                f"mixed series: {first.get('SeriesInstanceUID')} and {ds.get('SeriesInstanceUID')}"
            )
        if ds.get("Rows") != first.get("Rows") or ds.get("Columns") != first.get("Columns"):
            raise PetHeaderError(
                f"inconsistent matrix in {ds.get('SOPInstanceUID')}: {ds.get('Rows')}x"
                f"{ds.get('Columns')} vs {first.get('Rows')}x{first.get('Columns')}"
            )
        if np.max(np.abs(pet.image_orientation(ds) - orientation)) > _ORIENTATION_TOLERANCE:
            raise PetHeaderError(f"inconsistent orientation in {ds.get('SOPInstanceUID')}")
        if ds.get("NumberOfFrames") not in (None, "", 1, "1"):
            raise PetHeaderError(f"multi-frame instance {ds.get('SOPInstanceUID')} not supported")
    first_units = pet.units(first)
    for ds in datasets[1:]:
        if pet.units(ds) != first_units:
            raise PetHeaderError(
                f"inconsistent Units in {ds.get('SOPInstanceUID')}: {pet.units(ds)} vs "
                f"{first_units}"
            )
    pixel_spacing = first.get("PixelSpacing")
    if pixel_spacing is None or len(pixel_spacing) != 2:
        raise PetHeaderError("PixelSpacing is missing or not two values")
    for ds in datasets[1:]:
        other = ds.get("PixelSpacing")
        if other is None or [float(v) for v in other] != [float(v) for v in pixel_spacing]:
            raise PetHeaderError(f"inconsistent PixelSpacing in {ds.get('SOPInstanceUID')}")


def _slice_spacing_mm(positions: Sequence[float]) -> float:
    if len(positions) < 2:
        return 0.0
    steps = np.diff(np.asarray(positions, dtype=np.float64))
    if np.min(steps) < _DUPLICATE_POSITION_MM:
        index = int(np.argmin(steps))
        raise PetHeaderError(f"duplicate slice position {positions[index]:.3f} mm")
    nominal = float(np.median(steps))
    if np.max(np.abs(steps - nominal)) > SPACING_TOLERANCE_FRACTION * nominal:
        raise PetHeaderError(
            f"uneven slice spacing: {np.min(steps):.3f} to {np.max(steps):.3f} mm, more than "
            f"{SPACING_TOLERANCE_FRACTION:.0%} from the nominal {nominal:.3f} mm (missing slice?)"
        )
    return float(np.mean(steps))


def _bqml_slice(ds: Dataset) -> npt.NDArray[np.float32]:
    """Decode one slice and rescale it to Bq/ml.

    Raises:
        PixelDecodeError: The frame does not decode in its transfer syntax.
    """
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    try:
        stored = ds.pixel_array.astype(np.float64)
    except (ValueError, RuntimeError, NotImplementedError, TypeError, AttributeError) as exc:
        raise PixelDecodeError(
            f"slice {ds.get('SOPInstanceUID')} cannot be decoded from {syntax.name} "
            f"({syntax}): {exc}"
        ) from exc
    if stored.shape != (int(ds.Rows), int(ds.Columns)):
        raise PixelDecodeError(
            f"slice {ds.get('SOPInstanceUID')} decoded from {syntax.name} ({syntax}) to shape "
            f"{stored.shape}, the header says {int(ds.Rows)}x{int(ds.Columns)}"
        )
    slope, intercept = pet.rescale(ds)
    scale = pet.activity_scale(ds)
    return ((stored * slope + intercept) * scale).astype(np.float32)


def load_pet_volume(paths: Sequence[Path]) -> PetVolume:
    """Read, check and stack the slices of one PET series.

    Args:
        paths: One file per slice, any order; files are only read.

    Returns:
        The volume in Bq/ml (Units BQML, or CNTS with Philips scale factors).

    Raises:
        PetHeaderError: If no paths are given, a file is not DICOM, slices come from several
            series, rows/columns/orientation/pixel spacing/units differ, a position repeats,
            spacing is uneven beyond the tolerance, or units have no conversion to Bq/ml.
        PixelDecodeError: A frame does not decode.
    """
    if not paths:
        raise PetHeaderError("no slices to load")
    datasets = [_read(Path(path)) for path in paths]
    _check_consistent(datasets)
    keyed = sorted(((pet.slice_position_mm(ds), ds) for ds in datasets), key=lambda kv: kv[0])
    positions = tuple(position for position, _ in keyed)
    ordered = [ds for _, ds in keyed]
    slice_spacing = _slice_spacing_mm(positions)
    slices = [_bqml_slice(ds) for ds in ordered]
    row_spacing, column_spacing = (float(v) for v in ordered[0].PixelSpacing)
    log.info(
        "pet_volume_loaded", series_uid=ordered[0].get("SeriesInstanceUID"), slices=len(ordered)
    )
    return PetVolume(
        datasets=ordered,
        bqml=np.stack(slices, axis=0),
        spacing_mm=(slice_spacing, row_spacing, column_spacing),
        positions_mm=positions,
    )
