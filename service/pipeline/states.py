"""The series state machine (docs/architecture.md): states and the transitions allowed.

Kept apart from the database code so it can be read, and property-tested, on its own.
"""

from __future__ import annotations

from enum import StrEnum


class SeriesState(StrEnum):
    """Where a received series is in its life."""

    RECEIVING = "RECEIVING"
    COMPLETE = "COMPLETE"
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    WRITTEN = "WRITTEN"
    SENDING = "SENDING"
    DONE = "DONE"
    IGNORED = "IGNORED"  # not for us (CT, our own output): stored, never processed
    REJECTED = "REJECTED"  # PET we cannot process honestly; the reason says why
    FAILED = "FAILED"  # a step failed and will be retried (or incomplete, waiting for more)
    DEAD = "DEAD"  # retries spent: visible, replayable


class PendingStep(StrEnum):
    """The job a series waits for (or last failed in): what a retry, requeue or replay runs.

    Stored as its value in the ``series.pending_step`` column; ``NONE`` (the empty string)
    means no job is owed: the series is receiving, or delivered.
    """

    NONE = ""
    COMPLETENESS = "completeness"  # FAILED as incomplete: waits for more instances
    DENOISE = "denoise"
    SEND = "send"


S = SeriesState

ALLOWED_TRANSITIONS: dict[SeriesState, frozenset[SeriesState]] = {
    S.RECEIVING: frozenset({S.COMPLETE, S.FAILED, S.IGNORED, S.REJECTED}),
    S.COMPLETE: frozenset({S.QUEUED, S.RECEIVING}),
    S.QUEUED: frozenset({S.PROCESSING, S.RECEIVING, S.DEAD, S.FAILED, S.QUEUED}),
    S.PROCESSING: frozenset({S.WRITTEN, S.FAILED, S.DEAD, S.RECEIVING, S.PROCESSING, S.QUEUED}),
    S.WRITTEN: frozenset({S.SENDING, S.RECEIVING, S.WRITTEN}),
    S.SENDING: frozenset({S.DONE, S.FAILED, S.DEAD, S.SENDING, S.RECEIVING, S.WRITTEN}),
    S.DONE: frozenset({S.RECEIVING, S.QUEUED, S.DONE}),
    S.IGNORED: frozenset({S.RECEIVING, S.IGNORED}),
    S.REJECTED: frozenset({S.RECEIVING}),
    S.FAILED: frozenset({S.QUEUED, S.SENDING, S.PROCESSING, S.DEAD, S.RECEIVING, S.WRITTEN}),
    # FAILED by completeness (incomplete series) re-opens to RECEIVING when more arrive.
    S.DEAD: frozenset({S.COMPLETE, S.QUEUED, S.RECEIVING, S.WRITTEN}),
}

#: States in which a newly received instance re-opens the series (a re-send).
REOPEN_ON_NEW_INSTANCE = frozenset({S.COMPLETE, S.DONE, S.DEAD, S.FAILED})

#: States a worker or sender holds under a lease; an expired lease means the holder died.
LEASED_STATES = frozenset({S.PROCESSING, S.SENDING})

#: States counted against the admission limit on waiting series.
WAITING_STATES = frozenset({S.COMPLETE, S.QUEUED, S.PROCESSING, S.WRITTEN, S.SENDING, S.FAILED})

#: States listed as dead letters (operator attention needed).
DEAD_LETTER_STATES = frozenset({S.DEAD})


def can_transition(source: SeriesState, target: SeriesState) -> bool:
    """True if the state machine allows ``source -> target``."""
    return target in ALLOWED_TRANSITIONS[source]
