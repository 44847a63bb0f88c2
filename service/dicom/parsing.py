"""Parsing received bytes into a dataset, strictly, before anything is acknowledged.

The C-STORE handler must refuse (and quarantine) what it cannot read while the sender still
listens; pydicom is lenient by design, so this module makes its failures happen here.
"""

from __future__ import annotations

import struct
import threading
import warnings
from io import BytesIO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from service.errors import UndecodableDatasetError

#: Uncompressed syntaxes, explicit VR preferred (it keeps each element's VR as sent).
ACCEPTED_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]


_PARSE_LOCK = threading.Lock()


def parse_dataset(data: bytes) -> Dataset:
    """Parse received bytes (file meta included) and every top-level element.

    pydicom defers conversion of element values until first access, so a truncated or
    garbage dataset may only fail later; touching every element here makes it fail now,
    inside the handler, where it can be refused and quarantined. pydicom only *warns* when
    the encoding does not match the transfer syntax and then guesses; we refuse instead of
    guessing. ``warnings.catch_warnings`` is process-global, hence the lock (parsing a
    header takes milliseconds).
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
        with warnings.catch_warnings(record=True) as structural:
            warnings.simplefilter("always")
            try:
                ds = dcmread(BytesIO(data), force=False)
            except errors as exc:
                raise UndecodableDatasetError(f"dataset cannot be parsed: {exc}") from exc
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
    _check_pixel_data_length(ds)
    return ds


def _check_pixel_data_length(ds: Dataset) -> None:
    """Refuse uncompressed Pixel Data shorter than its header says (a truncated transfer).

    pydicom reads what bytes there are without complaint; the length follows from Rows,
    Columns, Samples per Pixel, Bits Allocated and Number of Frames (PS3.5 8.1.1), plus at
    most one padding byte.
    """
    if ds.file_meta.TransferSyntaxUID not in ACCEPTED_TRANSFER_SYNTAXES:
        return
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
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
