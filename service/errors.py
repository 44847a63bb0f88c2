"""Exceptions of the DICOM node, each refusal carrying the DICOM status it answers with.

Tree::

    NodeError
    +-- ConfigError                      bad configuration (key and reason in the message)
    +-- RefusedInstanceError             a C-STORE we refuse; .status is the DIMSE status
    |   +-- SpoolFullError               0xA700 Out of Resources (disk above watermark)
    |   +-- QueueFullError               0xA701 Out of Resources (too many series waiting)
    |   +-- SopClassMismatchError        0xA900 Data Set does not match SOP Class
    |   +-- InvalidUidError              0xA900 a UID that is not a valid DICOM UID
    |   +-- UndecodableDatasetError      0xC210 Cannot understand
    +-- PetHeaderError                   a PET header fact is missing or inconsistent
    |   +-- PixelDecodeError             a frame cannot be decoded from its transfer syntax
    +-- SeriesNotFoundError              no such series in the state database
    +-- InvalidTransitionError           a state change the series state machine forbids
    +-- SendError                        a destination refused or could not be reached (retried)
    +-- InferenceError                   the model could not denoise a volume

Status values follow PS3.4 Annex B.2.3 (Storage Service Class statuses); the listener maps a
``RefusedInstanceError`` to its status in one place (``service/listener.py``).
"""

from __future__ import annotations


class NodeError(Exception):
    """Base class of every error the node raises on purpose."""


class ConfigError(NodeError):
    """The configuration is invalid; the message names the key and what is wrong."""


# PS3.4 Table B.2-1 (C-STORE statuses) and PS3.7 Annex C.
STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_OUT_OF_RESOURCES_QUEUE = 0xA701
STATUS_DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC210
STATUS_PROCESSING_FAILURE = 0x0110
STORE_WARNING_STATUSES = frozenset({0xB000, 0xB006, 0xB007})


class RefusedInstanceError(NodeError):
    """An instance the listener refuses; ``status`` is the C-STORE status sent back."""

    status: int = STATUS_CANNOT_UNDERSTAND
    reason_code: str = "refused"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SpoolFullError(RefusedInstanceError):
    """The spool disk is above its watermark: refuse rather than risk a partial write."""

    status = STATUS_OUT_OF_RESOURCES
    reason_code = "spool_full"


class QueueFullError(RefusedInstanceError):
    """Too many series are waiting for a worker: tell the sender to try later."""

    status = STATUS_OUT_OF_RESOURCES_QUEUE
    reason_code = "queue_full"


class SopClassMismatchError(RefusedInstanceError):
    """The dataset's SOP Class does not match the one negotiated for the C-STORE."""

    status = STATUS_DATASET_DOES_NOT_MATCH_SOP_CLASS
    reason_code = "sop_class_mismatch"


class InvalidUidError(RefusedInstanceError):
    """A UID is not a valid DICOM UID; UIDs become paths, so this also stops traversal."""

    status = STATUS_DATASET_DOES_NOT_MATCH_SOP_CLASS
    reason_code = "invalid_uid"


class UndecodableDatasetError(RefusedInstanceError):
    """The dataset bytes could not be parsed (truncated, garbage, wrong transfer syntax)."""

    status = STATUS_CANNOT_UNDERSTAND
    reason_code = "undecodable"


class PetHeaderError(NodeError):
    """A PET header fact needed for quantitation is missing or inconsistent."""


class PixelDecodeError(PetHeaderError):
    """A received frame cannot be decoded; the message names the transfer syntax.

    A ``PetHeaderError`` so the worker parks the series at once (no retry decodes it).
    """


class SeriesNotFoundError(NodeError):
    """The state database holds no series with that key."""


class InvalidTransitionError(NodeError):
    """The series state machine does not allow this change."""


class SendError(NodeError):
    """Sending to a destination failed; the send task retries it with backoff."""


class ContextNotAcceptedError(SendError):
    """The destination accepted no presentation context for an instance's SOP class."""


class InferenceError(NodeError):
    """The denoiser could not process a volume."""
