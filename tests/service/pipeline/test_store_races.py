"""Concurrent writers of one series: no lost count, no IntegrityError, changed content seen."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from state_samples import advance, instance

from service.pipeline.states import PendingStep, SeriesState
from service.pipeline.store import StateStore

S = SeriesState


def _record_in_parallel(url: str, writers: int, per_writer: int) -> list[BaseException]:
    """Each writer has its own engine, like separate listener processes or threads."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def run(index: int) -> None:
        store = StateStore(url)
        try:
            barrier.wait(timeout=10)
            for n in range(per_writer):
                store.record_instance(instance(f"1.2.3.{index}.{n}", position=float(n)))
        except Exception as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_parallel_writers_of_one_new_series_lose_no_count(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore(url).close()
    errors = _record_in_parallel(url, writers=3, per_writer=20)
    assert errors == []
    store = StateStore(url)
    assert store.get("1.2.3").received_instances == 60
    assert len(store.instances("1.2.3")) == 60


def test_count_follows_the_rows_after_a_re_send(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    for n in range(3):
        store.record_instance(instance(f"1.2.3.{n}"))
    with sqlite3.connect(tmp_path / "state.db") as db:  # a count damaged by an older version
        db.execute("UPDATE series SET received_instances = 1")
    view = store.record_instance(instance("1.2.3.0"))
    assert view.received_instances == 3


def test_same_uid_with_other_content_after_done_keeps_first_copy(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.record_instance(instance("1.2.3.1", sha="a" * 64))
    advance(store, "1.2.3", S.DONE)
    assert store.instance_sha256("1.2.3.1") == "a" * 64
    assert store.instance_sha256("1.2.3.9") is None


def test_rejected_instance_rejects_its_receiving_series(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.record_instance(instance("1.2.3.1"))
    view = store.record_instance(instance("1.2.3.2", outcome=S.REJECTED))
    assert view.state is S.REJECTED
    assert "1.2.3.2" in view.state_reason


def test_heartbeat_renews_only_the_holders_lease(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.record_instance(instance("1.2.3.1"))
    advance(store, "1.2.3", S.QUEUED)
    claimed = store.claim(
        "1.2.3",
        S.PROCESSING,
        expect=[S.QUEUED],
        lease_s=10,
        reason="r",
        step=PendingStep.DENOISE,
        now=100,
    )
    assert claimed is not None
    assert store.renew_lease("1.2.3", S.PROCESSING, PendingStep.DENOISE, lease_s=10, now=105)
    assert store.get("1.2.3").lease_expires_at == 115
    assert not store.renew_lease("1.2.3", S.SENDING, PendingStep.SEND, lease_s=10, now=106)
