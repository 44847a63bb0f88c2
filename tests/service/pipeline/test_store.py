"""State database: transitions, compare-and-set, leases, re-opening, nothing lost."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from state_samples import advance, instance

from service.errors import InvalidTransitionError
from service.pipeline.records import DerivedOutput, SeriesUpdate
from service.pipeline.states import ALLOWED_TRANSITIONS, PendingStep, SeriesState, can_transition
from service.pipeline.store import StateStore

S = SeriesState
P = PendingStep


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


def test_every_state_can_reach_a_terminal_or_receiving_state() -> None:
    for state in SeriesState:
        assert ALLOWED_TRANSITIONS[state], state
    assert not can_transition(S.RECEIVING, S.DONE)
    assert can_transition(S.DEAD, S.COMPLETE)


def test_record_creates_series_and_counts_distinct_instances(store: StateStore) -> None:
    store.record_instance(instance("1.2.3.1", position=0.0))
    store.record_instance(instance("1.2.3.2", position=2.0))
    view = store.record_instance(instance("1.2.3.1", position=0.0))  # duplicate
    assert view.received_instances == 2
    assert view.state is S.RECEIVING
    assert [i.sop_instance_uid for i in store.instances("1.2.3")] == ["1.2.3.1", "1.2.3.2"]


def test_compare_and_set_lets_only_one_caller_win(store: StateStore) -> None:
    store.record_instance(instance("1.2.3.1"))
    store.transition("1.2.3", S.COMPLETE, "count", expect=[S.RECEIVING])
    first = store.transition("1.2.3", S.QUEUED, "q", expect=[S.COMPLETE])
    second = store.transition("1.2.3", S.QUEUED, "q", expect=[S.COMPLETE])
    assert first is not None and second is None


def test_forbidden_transition_raises(store: StateStore) -> None:
    store.record_instance(instance("1.2.3.1"))
    with pytest.raises(InvalidTransitionError):
        store.transition("1.2.3", S.DONE, "skip", expect=[S.RECEIVING])


def test_claim_respects_live_lease_and_takes_expired_one(store: StateStore) -> None:
    store.record_instance(instance("1.2.3.1"))
    store.transition("1.2.3", S.COMPLETE, "c", expect=[S.RECEIVING])
    store.transition(
        "1.2.3", S.QUEUED, "q", expect=[S.COMPLETE], update=SeriesUpdate(pending_step=P.DENOISE)
    )

    def claim_at(now: float) -> object:
        return store.claim(
            "1.2.3",
            S.PROCESSING,
            expect=[S.QUEUED],
            lease_s=10,
            reason="worker",
            step=P.DENOISE,
            now=now,
        )

    claimed = claim_at(1000.0)
    assert claimed is not None and claimed.attempts == 1  # type: ignore[attr-defined]
    assert claim_at(1005.0) is None  # lease still held
    retaken = claim_at(1011.0)
    assert retaken is not None and retaken.attempts == 2  # type: ignore[attr-defined]


def test_failed_series_is_claimed_only_by_the_failed_step(store: StateStore) -> None:
    store.record_instance(instance("1.2.3.1"))
    store.transition("1.2.3", S.COMPLETE, "c", expect=[S.RECEIVING])
    store.transition(
        "1.2.3", S.QUEUED, "q", expect=[S.COMPLETE], update=SeriesUpdate(pending_step=P.DENOISE)
    )
    store.claim("1.2.3", S.PROCESSING, expect=[S.QUEUED], lease_s=10, reason="w", step=P.DENOISE)
    store.transition(
        "1.2.3",
        S.FAILED,
        "boom",
        expect=[S.PROCESSING],
        update=SeriesUpdate(pending_step=P.DENOISE),
    )
    assert (
        store.claim(
            "1.2.3", S.SENDING, expect=[S.WRITTEN, S.FAILED], lease_s=10, reason="s", step=P.SEND
        )
        is None
    )
    assert (
        store.claim(
            "1.2.3",
            S.PROCESSING,
            expect=[S.QUEUED, S.FAILED],
            lease_s=10,
            reason="w",
            step=P.DENOISE,
        )
        is not None
    )


def test_resent_instance_reopens_a_done_series_and_keeps_history(store: StateStore) -> None:
    store.record_instance(instance("1.2.3.1"))
    advance(store, "1.2.3", S.DONE)
    reopened = store.record_instance(instance("1.2.3.1"))
    assert reopened.state is S.RECEIVING
    assert store.history("1.2.3")[-1].reason == "re-sent instance after DONE"
    assert [h.to_state for h in store.history("1.2.3")][:2] == ["RECEIVING", "COMPLETE"]


def test_transition_writes_the_given_columns_and_leaves_the_rest(store: StateStore) -> None:
    store.record_instance(instance("1.2.3.1"))
    store.transition(
        "1.2.3",
        S.COMPLETE,
        "count",
        expect=[S.RECEIVING],
        update=SeriesUpdate(completeness_reason="count: 1 of 1", completed_at=7.0),
    )
    output = DerivedOutput(
        series_uid="1.2.9",
        key="outgoing/1.2/1.2.3/abc",
        instances=1,
        algorithm="UniPET 0.1.0",
        drf_estimate=20.0,
        inference_seconds=1.5,
        written_at=9.0,
    )
    store.transition("1.2.3", S.QUEUED, "q", expect=[S.COMPLETE])
    store.transition("1.2.3", S.PROCESSING, "w", expect=[S.QUEUED])
    written = store.transition(
        "1.2.3",
        S.WRITTEN,
        "written",
        expect=[S.PROCESSING],
        update=SeriesUpdate(output=output, pending_step=P.SEND, last_error=""),
    )
    assert written is not None
    assert (written.output_series_uid, written.output_key, written.output_instances) == (
        "1.2.9",
        "outgoing/1.2/1.2.3/abc",
        1,
    )
    assert (written.algorithm, written.drf_estimate, written.inference_seconds) == (
        "UniPET 0.1.0",
        20.0,
        1.5,
    )
    assert written.written_at == 9.0 and written.pending_step is P.SEND
    assert (written.completeness_reason, written.completed_at) == ("count: 1 of 1", 7.0)
    assert written.done_at is None and written.purged_at is None
    sending = store.transition("1.2.3", S.SENDING, "s", expect=[S.WRITTEN])
    assert sending is not None and sending.pending_step is P.SEND  # no update: unchanged
    done = store.transition(
        "1.2.3",
        S.DONE,
        "stored",
        expect=[S.SENDING],
        update=SeriesUpdate(done_at=11.0, pending_step=P.NONE),
    )
    assert done is not None and done.pending_step is P.NONE and done.done_at == 11.0
    assert done.output_series_uid == "1.2.9"


def test_unknown_pending_step_in_the_database_is_refused_at_the_boundary(
    store: StateStore, tmp_path: Path
) -> None:
    store.record_instance(instance("1.2.3.1"))
    with closing(sqlite3.connect(tmp_path / "state.db")) as raw, raw:
        raw.execute("UPDATE series SET pending_step = 'resize'")
    with pytest.raises(ValueError, match="resize"):
        store.get("1.2.3")


def test_ignored_series_stays_ignored(store: StateStore) -> None:
    store.record_instance(instance("1.2.3.1", outcome=S.IGNORED))
    assert store.record_instance(instance("1.2.3.2", outcome=S.IGNORED)).state is S.IGNORED


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arrivals=st.lists(
        st.tuples(st.sampled_from(["1.9.1", "1.9.2", "1.9.3"]), st.integers(0, 20)),
        min_size=1,
        max_size=60,
    )
)
def test_nothing_received_is_ever_lost(tmp_path_factory: pytest.TempPathFactory, arrivals) -> None:  # type: ignore[no-untyped-def]
    store = StateStore(f"sqlite:///{tmp_path_factory.mktemp('db') / 'state.db'}")
    for series, index in arrivals:
        store.record_instance(instance(f"{series}.{index}", series=series, position=float(index)))
    expected: dict[str, set[str]] = {}
    for series, index in arrivals:
        expected.setdefault(series, set()).add(f"{series}.{index}")
    for series, sops in expected.items():
        assert {i.sop_instance_uid for i in store.instances(series)} == sops
        assert store.get(series).received_instances == len(sops)
    store.close()
