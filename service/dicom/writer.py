"""Write the denoised volume as a new, honestly labelled DERIVED PET series.

The contract: same study, patient and Frame of Reference; new series
and instance UIDs derived from the input and the algorithm, so a re-run re-sends identical
UIDs; derived-image semantics (PS3.3 C.12.4 General Reference Module: Derivation Code and
per-slice Source Image references); provenance in the IHE AI Results style (PS3.3 C.12.1
Contributing Equipment); quantitation headers kept so SUV from the output equals SUV from the
input. Input instances are only read, never written. Image Type is DERIVED\\PRIMARY, not
DERIVED\\SECONDARY: PS3.3 C.8.9.4.1.1 allows only PRIMARY as value 2 of a PET image (see
``service.dicom.derived.IMAGE_TYPE_DERIVED``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import UID
from pydicom.valuerep import DS, DSfloat

from service.dicom import derived
from service.dicom.card_facts import RangeCheck
from service.dicom.provenance import AlgorithmIdentity
from service.dicom.uids import derived_uid
from service.dicom.volume import PetVolume
from service.durable import fsync_path

__all__ = [
    "DEFAULT_DERIVATION_CODE",
    "DerivedSeries",
    "DerivedSeriesOptions",
    "encode_slice",
    "quantize_volume",
    "save_instance",
    "stored_volume",
    "write_derived_series",
]

log = structlog.stdlib.get_logger(__name__)

# CID 7203 Image Derivation has no "denoising" concept; noise reduction is smoothing, the
# closest standard meaning. A Gaussian post-filter may pass codes.DCM.GaussianBlur instead.
DEFAULT_DERIVATION_CODE: Code = codes.DCM.Smoothing  # (113087, DCM, "Smoothing")
_MAX_STORED = np.iinfo(np.uint16).max
_IS_MAX = 2**31 - 1
_LO_MAX = 64
FSYNC_THREADS = 4  # parallel fsyncs of one derived series
_QUANTISE_SLAB = 8  # slices quantised at once by stored_volume: cache-sized, bounded memory


@dataclass(frozen=True)
class DerivedSeriesOptions:
    """Site choices for the derived series (``service/config.py`` fills them)."""

    series_description_suffix: str = " [UniPET]"
    series_number_offset: int = 1000
    derivation_code: Code = field(default=DEFAULT_DERIVATION_CODE)

    def __post_init__(self) -> None:
        if len(self.series_description_suffix) > _LO_MAX:
            raise ValueError(
                f"series_description_suffix longer than {_LO_MAX} characters (LO): "
                f"{self.series_description_suffix!r}"
            )
        if not -_IS_MAX <= self.series_number_offset <= _IS_MAX:
            raise ValueError(
                f"series_number_offset outside the IS range: {self.series_number_offset}"
            )


@dataclass(frozen=True)
class DerivedSeries:
    """What was written: UIDs in slice order (feet to head), the files, and the headers as
    written (the quality report's evidence, without reading the files back)."""

    series_instance_uid: UID
    sop_instance_uids: tuple[UID, ...]
    paths: tuple[Path, ...]
    directory: Path
    headers: tuple[Dataset, ...] = ()


def quantize_volume(
    bqml: npt.NDArray[np.floating],
) -> tuple[npt.NDArray[np.uint16], tuple[DSfloat, ...]]:
    """The unsigned 16-bit stored values and the RescaleSlope of each slice (axis 0) of Bq/ml.

    PET rescale intercept must be 0 (PS3.3 C.8.9.4.1.3) and activity is non-negative, so
    unsigned integers use the full 16 bits: slope = slice maximum / 65535, quantisation error
    at most half a slope (7.6e-6 of the slice maximum). The slope is rounded to a valid DS
    first and the integers computed from that rounded value, so stored x slope is what was
    meant. Negative values (possible after denoising) are clipped to 0.
    """
    values = np.clip(np.asarray(bqml, dtype=np.float64), 0.0, None)
    peaks = values.reshape(values.shape[0], -1).max(axis=1) if values.size else np.zeros(0)
    slopes = tuple(
        DSfloat(float(peak) / _MAX_STORED if peak > 0.0 else 1.0, auto_format=True)
        for peak in peaks
    )
    divisors = np.asarray([float(slope) for slope in slopes], dtype=np.float64)
    values /= divisors.reshape((-1,) + (1,) * (values.ndim - 1))  # in place: one volume
    stored = np.clip(np.rint(values, out=values), 0, _MAX_STORED).astype(np.uint16)
    return stored, slopes


def stored_volume(bqml: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """The Bq/ml a reader of the written series gets back (``load_pet_volume``), computed
    without the files: each slice quantised as ``encode_slice`` stores it, times its slope.

    Lets the quality report measure exactly what is sent while the series is being written.
    """
    volume = np.empty(bqml.shape, dtype=np.float32)
    for first in range(0, bqml.shape[0], _QUANTISE_SLAB):
        slab = slice(first, first + _QUANTISE_SLAB)
        stored, slopes = quantize_volume(bqml[slab])
        scale = np.asarray([float(slope) for slope in slopes], dtype=np.float64)
        volume[slab] = stored * scale.reshape(-1, 1, 1)
    return volume


def encode_slice(ds: Dataset, bqml: npt.NDArray[np.floating]) -> int:
    """Store one slice of Bq/ml as unsigned 16-bit integers with its own RescaleSlope
    (``quantize_volume``).

    Returns:
        How many voxels were negative and clipped.

    Raises:
        ValueError: If the slice is not 2-D or holds NaN or infinity.
    """
    if bqml.ndim != 2:
        raise ValueError(f"a slice must be 2-D, got shape {bqml.shape}")
    if not np.all(np.isfinite(bqml)):
        raise ValueError("slice holds NaN or infinite values")
    clipped = int(np.count_nonzero(np.asarray(bqml) < 0.0))
    [stored], [slope] = quantize_volume(bqml[np.newaxis])
    # Image Pixel (PS3.3 C.7.6.3) as constrained by PET Image (C.8.9.4)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = (int(n) for n in stored.shape)
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = DS("0")
    ds.RescaleSlope = slope
    # OW by name: 16-bit native pixels (PS3.5 8.2). The dictionary's "OB or OW" is resolved
    # only for datasets that are re-encoded, and a derived header keeps its source's encoding.
    ds.add_new("PixelData", "OW", stored.astype("<u2").tobytes())
    return clipped


def save_instance(ds: Dataset, path: Path) -> None:
    """Write one instance as a DICOM Part 10 file and fsync it (PS3.10 section 7)."""
    _write_instance(ds, path)
    fsync_path(path)


def _write_instance(ds: Dataset, path: Path) -> None:
    """Write one instance as a DICOM Part 10 file, not yet fsynced."""
    with path.open("wb") as handle:
        dcmwrite(handle, ds, enforce_file_format=True)


def _canonical_parameters(algorithm: AlgorithmIdentity) -> str:
    return json.dumps(dict(sorted(algorithm.parameters.items())), separators=(",", ":"))


def _series_number(source: Dataset, offset: int) -> int:
    """Source SeriesNumber + offset, or the offset alone if that would leave the IS range."""
    original = source.get("SeriesNumber")
    number = int(original) + offset if original not in (None, "") else offset
    return number if -_IS_MAX <= number <= _IS_MAX else offset


def _series_description(source: Dataset, suffix: str) -> str:
    """Original description + suffix, the original shortened so the LO stays within 64."""
    original = str(source.get("SeriesDescription", "") or "")
    return original[: max(0, _LO_MAX - len(suffix))] + suffix


def _check_inputs(source: PetVolume, denoised_bqml: npt.NDArray[np.floating]) -> None:
    if denoised_bqml.shape != source.bqml.shape:
        raise ValueError(
            f"denoised shape {denoised_bqml.shape} differs from source {source.bqml.shape}"
        )
    if not np.all(np.isfinite(denoised_bqml)):
        raise ValueError("denoised volume holds NaN or infinite values")


def _replace_directory_contents(staging: Path, out_dir: Path, series_uid: str) -> None:
    """Move the staged series into place so out_dir always holds one whole series.

    A missing out_dir is created by one rename. An existing one is the output of an earlier
    run of the same input series and algorithm (the folder is named by both), possibly with
    fewer slices (late instances re-opened the series): every staged file replaces or joins
    it by an atomic rename, then files the new run did not write are removed. At no moment
    does the folder hold fewer slices than the earlier whole output.
    """
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    for existing in out_dir.glob("*.dcm"):
        if str(dcmread(existing, stop_before_pixels=True).SeriesInstanceUID) != series_uid:
            raise FileExistsError(f"{out_dir} exists and holds another series")
        break
    staged = {p.name for p in staging.iterdir()}
    for name in sorted(staged):
        (staging / name).replace(out_dir / name)
    for stale in out_dir.iterdir():
        if stale.name not in staged:
            stale.unlink()
    staging.rmdir()


def write_derived_series(
    source: PetVolume,
    denoised_bqml: npt.NDArray[np.floating],
    algorithm: AlgorithmIdentity,
    out_dir: Path,
    *,
    drf_estimate: float | None = None,
    range_check: RangeCheck | None = None,
    options: DerivedSeriesOptions = DerivedSeriesOptions(),
) -> DerivedSeries:
    """Write ``denoised_bqml`` as a DERIVED PET series next to ``source`` in its study.

    Negative denoised values are clipped to 0 Bq/ml (activity cannot be negative; PET Image
    rescale intercept is 0) and the DerivationDescription says how many were clipped.

    Args:
        source: The input series as loaded by ``service.dicom.volume.load_pet_volume``.
        denoised_bqml: Same shape as ``source.bqml``, Bq/ml.
        algorithm: Who made the values; its hash and parameters seed the output UIDs.
        out_dir: Final series folder; an earlier run's files there (same input series and
            algorithm, perhaps fewer slices) are replaced file by file.
        drf_estimate: Estimated dose reduction factor of the input, if known.
        range_check: The input against the model card's trained ranges; its note goes into
            the DerivationDescription when the input lies outside them.
        options: Description suffix, series number offset and derivation code.

    Raises:
        ValueError: If the shapes differ or values are not finite.
        FileExistsError: If ``out_dir`` holds another derived series.
    """
    _check_inputs(source, denoised_bqml)
    first = source.datasets[0]
    source_series_uid = str(first.SeriesInstanceUID)
    parameters = _canonical_parameters(algorithm)
    series_uid = derived_uid(
        "unipet-derived-series", source_series_uid, algorithm.weights_sha256, parameters
    )
    now = datetime.now()
    clipped = int(np.count_nonzero(denoised_bqml < 0.0))
    context = derived.DerivationContext(
        algorithm=algorithm,
        series_instance_uid=series_uid,
        series_number=_series_number(first, options.series_number_offset),
        series_description=_series_description(first, options.series_description_suffix),
        derivation_code=options.derivation_code,
        derivation_description=derived.derivation_description(
            algorithm, drf_estimate, clipped, range_check.note if range_check else ""
        ),
        source_series=source.datasets,
        now=now,
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes it 0700; the sender may run as another user
    # fsync releases the interpreter lock: each file is flushed in the pool while the next
    # instance is encoded, and every flush has finished before the series is moved in place.
    fsyncs = ThreadPoolExecutor(max_workers=FSYNC_THREADS, thread_name_prefix="fsync")
    try:
        sop_uids: list[UID] = []
        names: list[str] = []
        headers: list[Dataset] = []
        flushed: list[Future[None]] = []
        for index, source_ds in enumerate(source.datasets):
            sop_uid = derived_uid(
                "unipet-derived-instance",
                str(source_ds.SOPInstanceUID),
                algorithm.weights_sha256,
                parameters,
            )
            ds = derived.derived_header(source_ds, sop_uid, context)
            encode_slice(ds, denoised_bqml[index])
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = derived.OUTPUT_TRANSFER_SYNTAX
            _write_instance(ds, staging / f"{sop_uid}.dcm")
            flushed.append(fsyncs.submit(fsync_path, staging / f"{sop_uid}.dcm"))
            del ds.PixelData  # the header is kept; the pixels are on disk
            headers.append(ds)
            sop_uids.append(sop_uid)
            names.append(f"{sop_uid}.dcm")
        for flush in flushed:
            flush.result()  # an I/O error here fails the write before anything is moved
        _replace_directory_contents(staging, out_dir, str(series_uid))
    finally:
        fsyncs.shutdown(wait=True)
        if staging.exists():
            shutil.rmtree(staging)
    log.info(
        "derived_series_written",
        output_series_uid=series_uid,
        source_series_uid=source_series_uid,
        instances=len(sop_uids),
        clipped=clipped,
    )
    return DerivedSeries(
        series_instance_uid=series_uid,
        sop_instance_uids=tuple(sop_uids),
        paths=tuple(out_dir / name for name in names),
        directory=out_dir,
        headers=tuple(headers),
    )
