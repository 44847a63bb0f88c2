"""Tests for service.dicom.uids: UID syntax guard and deterministic derived UIDs."""

from __future__ import annotations

from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.dicom.uids import MAX_UID_LENGTH, derived_uid, validate_uid
from service.errors import InvalidUidError

_COMPONENT = st.one_of(st.just("0"), st.from_regex(r"[1-9][0-9]{0,8}", fullmatch=True))


@pytest.mark.parametrize(
    "uid", ["1.2.840.10008.5.1.4.1.1.128", "0", "2.25.0", "1." + "2" * (MAX_UID_LENGTH - 2)]
)
def test_valid_uids_are_returned_unchanged(uid: str) -> None:
    assert validate_uid(uid, "SOPInstanceUID") == uid


@pytest.mark.parametrize(
    "uid",
    [
        "../1.2",
        "1.02.3",
        "1." + "2" * (MAX_UID_LENGTH - 1),
        "",
        "1..2",
        "1.2.",
        ".1.2",
        "1.2/3",
        "1.2\\3",
        "1.2 ",
        "1.2\x00",
        "a.b",
        "1.2\n",
        "\u0661.2",
    ],
)
def test_invalid_uids_are_refused(uid: str) -> None:
    with pytest.raises(InvalidUidError, match="SeriesInstanceUID"):
        validate_uid(uid, "SeriesInstanceUID")


def test_non_string_is_refused() -> None:
    with pytest.raises(InvalidUidError, match="not a string"):
        validate_uid(None, "StudyInstanceUID")


def test_error_carries_the_dicom_status() -> None:
    with pytest.raises(InvalidUidError) as info:
        validate_uid("../1.2", "SOPInstanceUID")
    assert info.value.status == 0xA900
    assert "'../1.2'" in str(info.value)


@given(st.lists(_COMPONENT, min_size=1, max_size=12))
def test_well_formed_uids_are_accepted(components: list[str]) -> None:
    uid = ".".join(components)
    if len(uid) <= MAX_UID_LENGTH:
        assert validate_uid(uid, "uid") == uid
    else:
        with pytest.raises(InvalidUidError):
            validate_uid(uid, "uid")


@given(st.text(max_size=80))
def test_anything_accepted_is_one_safe_path_component(text: str) -> None:
    try:
        uid = validate_uid(text, "uid")
    except InvalidUidError:
        return
    assert PurePosixPath(uid).name == uid
    assert uid not in {".", ".."}
    assert set(uid) <= set("0123456789.")
    assert len(uid) <= MAX_UID_LENGTH


def test_derived_uid_is_deterministic_and_valid() -> None:
    first = derived_uid("series", "1.2.3", "ab" * 32)
    assert first == derived_uid("series", "1.2.3", "ab" * 32)
    assert validate_uid(first, "derived") == first
    assert first.startswith("2.25.")


def test_derived_uid_depends_on_every_part_and_its_boundaries() -> None:
    base = derived_uid("series", "1.2.3", "ab" * 32)
    assert derived_uid("series", "1.2.3", "cd" * 32) != base
    assert derived_uid("series", "1.2.4", "ab" * 32) != base
    assert derived_uid("1.2", "3") != derived_uid("1.23", "")


def test_derived_uid_needs_parts() -> None:
    with pytest.raises(ValueError, match="at least one part"):
        derived_uid()
