"""DICOM UID checks and deterministic UIDs for what the node derives.

Received UIDs become directory and file names in the spool, so a UID is checked against the
DICOM syntax (PS3.5 9.1) before it touches the file system: that check is the
path-traversal guard. Output UIDs are derived from their inputs, so running the same input
through the same algorithm twice gives the same UIDs and a PACS never holds a duplicate.
"""

from __future__ import annotations

import re

from pydicom.uid import UID, generate_uid

from service.errors import InvalidUidError

__all__ = ["DERIVED_UID_PREFIX", "MAX_UID_LENGTH", "derived_uid", "validate_uid"]

# PS3.5 section 9.1: at most 64 characters.
MAX_UID_LENGTH = 64

# PS3.5 section 9.1: components of digits separated by ".", a component starts with a
# non-zero digit unless it is the single digit "0".
_UID_PATTERN = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")

# PS3.5 Annex B.2: UUID-derived UIDs under the "2.25" root need no registered org root.
DERIVED_UID_PREFIX = "2.25."


def validate_uid(value: object, what: str) -> str:
    """Return ``value`` as a plain string if it is a syntactically valid DICOM UID.

    Trailing NUL padding is not accepted here: pydicom strips it while decoding, so anything
    still carrying it (or spaces, slashes, ``..``) did not come from a well-formed element.

    Args:
        value: The candidate UID, usually an element value from a received dataset.
        what: What the UID is (e.g. "SOPInstanceUID"), named in the error message.

    Returns:
        The UID as ``str``, safe to use as one path component.

    Raises:
        InvalidUidError: If ``value`` is not a string, is empty, longer than 64 characters,
            or breaks the PS3.5 section 9.1 syntax.
    """
    if not isinstance(value, str):
        raise InvalidUidError(f"{what} is not a string: {value!r}")
    text = str(value)
    if not text:
        raise InvalidUidError(f"{what} is empty")
    if len(text) > MAX_UID_LENGTH:
        raise InvalidUidError(
            f"{what} is {len(text)} characters, more than {MAX_UID_LENGTH}: {text!r}"
        )
    if _UID_PATTERN.fullmatch(text) is None:
        raise InvalidUidError(
            f"{what} is not a DICOM UID (digits and dots, no leading zeros): {text!r}"
        )
    return text


def derived_uid(*parts: str) -> UID:
    """Return a UID under ``2.25.`` that depends only on ``parts``.

    The parts are hashed (SHA-512 inside ``pydicom.uid.generate_uid``) in order, each one
    length-prefixed so that ("1.2", "3") and ("1.23", "") cannot collide.

    Raises:
        ValueError: If no part is given (a random UID would defeat determinism).
    """
    if not parts:
        raise ValueError("derived_uid needs at least one part")
    entropy = [f"{len(part)}:{part}" for part in parts]
    return generate_uid(prefix=DERIVED_UID_PREFIX, entropy_srcs=entropy)
