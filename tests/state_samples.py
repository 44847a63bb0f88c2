"""Shared test helpers for the state store: a received instance and the happy-path walk."""

from __future__ import annotations

import itertools

from service.pipeline.records import ReceivedInstance
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore

S = SeriesState


def instance(
    sop: str,
    series: str = "1.2.3",
    position: float | None = 0.0,
    sha: str = "a" * 64,
    outcome: SeriesState = S.RECEIVING,
) -> ReceivedInstance:
    return ReceivedInstance(
        study_instance_uid="1.2",
        series_instance_uid=series,
        sop_instance_uid=sop,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.128",
        calling_aet="SCANNER",
        modality="PT",
        series_description="PET WB",
        spool_key=f"incoming/1.2/{series}/{sop}.dcm",
        sha256=sha,
        size_bytes=100,
        slice_position_mm=position,
        expected_instances=3,
        outcome_state=outcome,
        outcome_reason="eligible",
    )


HAPPY_PATH = [S.RECEIVING, S.COMPLETE, S.QUEUED, S.PROCESSING, S.WRITTEN, S.SENDING, S.DONE]


def advance(store: StateStore, uid: str, until: SeriesState, now: float | None = None) -> None:
    """Walk a RECEIVING series along the happy path up to ``until``, asserting each step."""
    for source, target in itertools.pairwise(HAPPY_PATH):
        assert store.transition(uid, target, target.value, expect=[source], now=now) is not None
        if target is until:
            return
