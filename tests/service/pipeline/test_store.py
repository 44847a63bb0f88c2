"""State database: transitions, compare-and-set, leases, re-opening, nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from state_samples import advance, instance

from service.errors import InvalidTransitionError
from service.pipeline.records import SeriesUpdate
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
