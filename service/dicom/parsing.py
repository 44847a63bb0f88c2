"""Parsing received bytes into a dataset, strictly, before anything is acknowledged.

The C-STORE handler must refuse (and quarantine) what it cannot read while the sender still
listens; pydicom is lenient by design, so this module makes its failures happen here.
"""

from __future__ import annotations

import struct
import threading
import warnings
from io import BytesIO
from pathlib import Path
from struct import error as struct_error

import pydicom
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import parse_basic_offsets, parse_fragments
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from service.errors import UndecodableDatasetError

__all__ = [
    "ACCEPTED_TRANSFER_SYNTAXES",
    "ENCAPSULATED_TRANSFER_SYNTAXES",
    "NATIVE_TRANSFER_SYNTAXES",
    "parse_dataset",
]

#: Uncompressed syntaxes, explicit VR preferred (it keeps each element's VR as sent).
NATIVE_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]
#: Compressed syntaxes scanners and archives forward PET in (PS3.5 Annex A.4). Their
#: Pixel Data is encapsulated; the worker decodes it with pydicom's pylibjpeg plugins
#: (``service.dicom.volume``), never the C-STORE handler.
ENCAPSULATED_TRANSFER_SYNTAXES = [
    JPEGLSLossless,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    RLELossless,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEGLSNearLossless,
    JPEG2000,
    HTJ2K,
]
#: Everything the listener accepts, uncompressed first (PS3.8 Annex B: the SCP picks).
ACCEPTED_TRANSFER_SYNTAXES = [*NATIVE_TRANSFER_SYNTAXES, *ENCAPSULATED_TRANSFER_SYNTAXES]


_PARSE_LOCK = threading.Lock()
#: Where pydicom's own warnings come from (``pydicom.misc.warn_and_log`` names its caller).
_PYDICOM_DIR = Path(pydicom.__file__).parent
# An item's tag and 32-bit length (PS3.5 7.5).
_ITEM_HEADER_BYTES = 8


def parse_dataset(data: bytes) -> Dataset:
    """Parse received bytes (file meta included) and every top-level element.

    pydicom defers conversion of element values until first access, so a truncated or
    garbage dataset may only fail later; touching every element here makes it fail now,
    inside the handler, where it can be refused and quarantined. pydicom only *warns* when
    the encoding does not match the transfer syntax and then guesses; we refuse instead of
    guessing. ``warnings.catch_warnings`` is process-global, hence the lock (parsing a
    header takes milliseconds). Being global, it also records what other code warns meanwhile
    (a ResourceWarning when the garbage collector closes a forgotten file, another thread's
    deprecation notice): only warnings raised inside pydicom count against the dataset.
    """
    errors = (
        InvalidDicomError,
        EOFError,
        ValueError,
        KeyError,
        TypeError,
        OverflowError,
        NotImplementedError,  # an unknown VR in explicit VR encoding
        AttributeError,
        IndexError,
        struct.error,  # a value shorter than its VR's fixed size
        BytesLengthException,
        OSError,  # pydicom's "No tag to read" on a cut element (in-memory: never real I/O)
    )
    with _PARSE_LOCK:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                ds = dcmread(BytesIO(data), force=False)
            except errors as exc:
                raise UndecodableDatasetError(f"dataset cannot be parsed: {exc}") from exc
        structural = [w for w in caught if Path(w.filename).is_relative_to(_PYDICOM_DIR)]
        if structural:
            raise UndecodableDatasetError(
                f"dataset encoding is inconsistent: {structural[0].message}"
            )
        # Invalid *values* (a malformed date, say) are common in clinical headers and are
        # judged where they matter (UIDs below, PET facts in selection); pydicom logs them.
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            try:
                for element in ds:
                    _ = element.value
            except errors as exc:
                raise UndecodableDatasetError(f"dataset cannot be parsed: {exc}") from exc
    if "PixelData" not in ds:
        raise UndecodableDatasetError("dataset has no Pixel Data")
    if UID(ds.file_meta.TransferSyntaxUID).is_encapsulated:
        _check_encapsulation(ds)
    else:
        _check_pixel_data_length(ds)
    return ds


def _frame_count(ds: Dataset) -> int:
    try:
        return int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise UndecodableDatasetError(f"NumberOfFrames is not a number: {exc}") from exc


def _fragments_overrun(buffer: bytes) -> bool:
    """True if the last fragment item claims more bytes than the buffer holds."""
    position = 0
    while position + _ITEM_HEADER_BYTES <= len(buffer):
        length = int.from_bytes(buffer[position + 4 : position + 8], "little")
        position += _ITEM_HEADER_BYTES + length
    return position != len(buffer)


def _check_encapsulation(ds: Dataset) -> None:
    """Refuse encapsulated Pixel Data whose item structure is broken, without decoding.

    PS3.5 A.4: a Basic Offset Table item, then one or more fragment items, each an
    (FFFE,E000) tag with an even length that fits in the value. A truncated transfer breaks
    this chain; a frame that parses but does not decode is caught by the worker instead.
    """
    element = ds["PixelData"]
    syntax = UID(ds.file_meta.TransferSyntaxUID)
    if not element.is_undefined_length:
        raise UndecodableDatasetError(
            f"Pixel Data is not encapsulated although the transfer syntax is {syntax.name}"
        )
    value = element.value
    if not isinstance(value, bytes):
        raise UndecodableDatasetError("encapsulated Pixel Data value is not bytes")
    frames = _frame_count(ds)
    try:
        offsets = parse_basic_offsets(value)
        fragments, positions = parse_fragments(value[_ITEM_HEADER_BYTES + 4 * len(offsets) :])
    except (ValueError, struct_error) as exc:
        raise UndecodableDatasetError(
            f"encapsulated Pixel Data ({syntax.name}) is malformed: {exc}"
        ) from exc
    if positions and _fragments_overrun(value[_ITEM_HEADER_BYTES + 4 * len(offsets) :]):
        raise UndecodableDatasetError(
            f"encapsulated Pixel Data ({syntax.name}) ends inside a fragment: truncated?"
        )
    if fragments < 1 or (fragments < frames and len(offsets) not in (0, frames)):
        raise UndecodableDatasetError(
            f"encapsulated Pixel Data ({syntax.name}) holds {fragments} fragments for "
            f"{frames} frames: truncated?"
        )


def _check_pixel_data_length(ds: Dataset) -> None:
    """Refuse uncompressed Pixel Data shorter than its header says (a truncated transfer).

    pydicom reads what bytes there are without complaint; the length follows from Rows,
    Columns, Samples per Pixel, Bits Allocated and Number of Frames (PS3.5 8.1.1), plus at
    most one padding byte.
    """
    frames = _frame_count(ds)
    try:
        expected = (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("SamplesPerPixel", 1))
            * frames
            * int(ds.BitsAllocated)
            // 8
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise UndecodableDatasetError(f"image pixel description incomplete: {exc}") from exc
    actual = len(ds.PixelData)
    implied = (
        f"{ds.Rows}x{ds.Columns}x{frames} at BitsAllocated {ds.BitsAllocated} implies {expected}"
    )
    if actual < expected:
        raise UndecodableDatasetError(f"Pixel Data truncated: {actual} bytes, {implied}")
    if actual > expected + 1:
        # Not a short transfer: the header misdescribes the pixels (e.g. 12-bit values in
        # 16-bit words declared as BitsAllocated 12).
        raise UndecodableDatasetError(
            f"Pixel Data longer than the image header says: {actual} bytes, {implied}"
        )
