"""Recording a batch of instances does exactly what recording them one by one does."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError
from state_samples import advance, instance

from service.pipeline.records import ReceivedInstance
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore

S = SeriesState
NOW = 1_700_000_000.0
SERIES = ["1.9.1", "1.9.2", "1.9.3"]

#: 99 is the instance each series held before (a re-send of it re-opens fewer states).
arrival = st.tuples(
    st.sampled_from(SERIES),
    st.sampled_from([0, 1, 2, 3, 4, 99]),
    st.sampled_from([S.RECEIVING, S.RECEIVING, S.IGNORED, S.REJECTED]),
    st.sampled_from(["a" * 64, "b" * 64]),
)


def _item(series: str, index: int, outcome: SeriesState, sha: str) -> ReceivedInstance:
    return dataclasses.replace(
        instance(f"{series}.{index}", series=series, position=float(index), sha=sha),
        outcome_state=outcome,
        outcome_reason="eligible" if outcome is S.RECEIVING else f"{outcome.value.lower()} here",
    )


def _prepare(store: StateStore, before: dict[str, SeriesState | None]) -> None:
    """The same earlier life of each series in both stores (nothing, or up to a state)."""
    for series, state in before.items():
        if state is None:
            continue
        store.record_instance(_item(series, 99, S.RECEIVING, "c" * 64), now=NOW - 10)
        if state is not S.RECEIVING:
            advance(store, series, state, now=NOW - 5)


def _snapshot(store: StateStore) -> dict[str, object]:
    seen: dict[str, object] = {}
    for view in store.recent(100):
        uid = view.series_instance_uid
        seen[uid] = (
            view,
            [(i.sop_instance_uid, i.sha256, i.received_at) for i in store.instances(uid)],
            [(h.from_state, h.to_state, h.reason) for h in store.history(uid)],
        )
    return seen


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    before=st.fixed_dictionaries(
        {s: st.sampled_from([None, S.RECEIVING, S.PROCESSING, S.DONE]) for s in SERIES}
    ),
    arrivals=st.lists(arrival, min_size=1, max_size=24),
    batch=st.integers(1, 8),
)
def test_a_batch_records_what_one_by_one_would(
    tmp_path_factory: pytest.TempPathFactory,
    before: dict[str, SeriesState | None],
    arrivals: list[tuple[str, int, SeriesState, str]],
    batch: int,
) -> None:
    folder = tmp_path_factory.mktemp("db")
    one_by_one = StateStore(f"sqlite:///{folder / 'single.db'}")
    batched = StateStore(f"sqlite:///{folder / 'batched.db'}")
    items = [_item(*a) for a in arrivals]
    try:
        for store in (one_by_one, batched):
            _prepare(store, before)
        for item in items:
            one_by_one.record_instance(item, now=NOW)
        for start in range(0, len(items), batch):
            assert batched.record_instances(items[start : start + batch], now=NOW) == [None] * len(
                items[start : start + batch]
            )
        assert _snapshot(batched) == _snapshot(one_by_one)
    finally:
        one_by_one.close()
        batched.close()


def test_a_row_the_database_refuses_fails_alone(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    refused = dataclasses.replace(instance("1.9.9.1", series="1.9.9"), modality=None)  # type: ignore[arg-type]  # NOT NULL in the schema
    outcome = store.record_instances([instance("1.2.3.1"), refused, instance("1.2.3.2")])
    assert outcome[0] is None
    assert isinstance(outcome[1], IntegrityError)
    assert outcome[2] is None
    assert [v.series_instance_uid for v in store.recent()] == ["1.2.3"]
    assert store.get("1.2.3").received_instances == 2
    store.close()
