"""Delivery ledger: one row per destination, retries only where missing, reset on re-open."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from state_samples import advance, instance

from service.pipeline.deliveries import DeliveryState
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore

S = SeriesState
D = DeliveryState


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.record_instance(instance("1.2.3.1"))
    return store


def test_ensure_creates_pending_rows_once(store: StateStore) -> None:
    store.deliveries.ensure("1.2.3", ["pacs", "archive"])
    store.deliveries.mark("1.2.3", "pacs", D.SENT, now=50.0)
    store.deliveries.ensure("1.2.3", ["pacs", "archive"])  # idempotent: keeps SENT
    ledger = store.deliveries.of("1.2.3")
    assert {name: view.state for name, view in ledger.items()} == {
        "pacs": D.SENT,
        "archive": D.PENDING,
    }
    assert ledger["pacs"].sent_at == 50.0 and ledger["pacs"].attempts == 1
    assert ledger["archive"].sent_at is None and ledger["archive"].attempts == 0


def test_failed_attempts_count_and_only_sent_destinations_are_skipped(store: StateStore) -> None:
    store.deliveries.ensure("1.2.3", ["pacs", "archive"])
    store.deliveries.mark("1.2.3", "archive", D.FAILED, "association rejected")
    store.deliveries.mark("1.2.3", "pacs", D.SENT)
    assert store.deliveries.sent_to("1.2.3") == {"pacs"}
    archive = store.deliveries.of("1.2.3")["archive"]
    assert (archive.state, archive.attempts, archive.last_error) == (
        D.FAILED,
        1,
        "association rejected",
    )
    store.deliveries.mark("1.2.3", "archive", D.SENT)
    archive = store.deliveries.of("1.2.3")["archive"]
    assert (archive.state, archive.attempts, archive.last_error) == (D.SENT, 2, "")
    assert store.deliveries.sent_to("1.2.3") == {"pacs", "archive"}


def test_mark_without_ensure_creates_the_row(store: StateStore) -> None:
    store.deliveries.mark("1.2.3", "sender-SCANNER", D.SENT)
    assert store.deliveries.sent_to("1.2.3") == {"sender-SCANNER"}


def test_new_instance_after_done_resets_every_destination(store: StateStore) -> None:
    advance(store, "1.2.3", S.DONE)
    store.deliveries.ensure("1.2.3", ["pacs", "archive"])
    store.deliveries.mark("1.2.3", "pacs", D.SENT)
    store.deliveries.mark("1.2.3", "archive", D.SENT)
    assert store.record_instance(instance("1.2.3.2", position=2.0)).state is S.RECEIVING
    ledger = store.deliveries.of("1.2.3")
    assert {view.state for view in ledger.values()} == {D.PENDING}
    assert {view.attempts for view in ledger.values()} == {0}
    assert store.deliveries.sent_to("1.2.3") == set()


def test_unknown_state_in_the_database_is_refused_at_the_boundary(
    store: StateStore, tmp_path: Path
) -> None:
    store.deliveries.ensure("1.2.3", ["pacs"])
    with closing(sqlite3.connect(tmp_path / "state.db")) as raw, raw:
        raw.execute("UPDATE delivery SET state = 'LOST'")
    with pytest.raises(ValueError, match="LOST"):
        store.deliveries.of("1.2.3")
