"""Strict parsing: what pydicom only warns about is refused; what other code warns is not."""

from __future__ import annotations

import warnings
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import ImplicitVRLittleEndian

from service.dicom import parsing
from service.dicom.parsing import parse_dataset
from service.errors import UndecodableDatasetError


def _first_instance(study_copy: Path) -> bytes:
    return sorted((study_copy / "drf20").glob("*.dcm"))[0].read_bytes()


def test_encoding_other_than_the_transfer_syntax_is_refused(study_copy: Path) -> None:
    ds = dcmread(BytesIO(_first_instance(study_copy)))
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)  # explicit VR, as written
    data = buffer.getvalue()
    meta = dcmread(BytesIO(data)).file_meta
    declared = meta.TransferSyntaxUID
    # Same bytes, meta claiming implicit VR: pydicom warns and guesses explicit.
    data = data.replace(declared.encode(), ImplicitVRLittleEndian.encode().ljust(len(declared)))
    with pytest.raises(UndecodableDatasetError, match="encoding is inconsistent"):
        parse_dataset(data)


def test_warnings_from_outside_pydicom_do_not_refuse_a_valid_dataset(
    study_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``catch_warnings`` is process-global: what another thread or the garbage collector
    warns while a dataset is read lands in the same record (here: a forgotten file closed)."""
    data = _first_instance(study_copy)

    def read_while_something_else_warns(*args: Any, **kwargs: Any) -> Dataset:
        warnings.warn("unclosed file <_io.BufferedReader>", ResourceWarning, stacklevel=1)
        return dcmread(*args, **kwargs)

    monkeypatch.setattr(parsing, "dcmread", read_while_something_else_warns)
    assert "PixelData" in parsing.parse_dataset(data)
