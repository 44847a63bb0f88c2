"""Dispatcher: complete series are queued once; expired leases are queued again."""

from __future__ import annotations

from pathlib import Path

from state_samples import advance, instance

from service.config import load_settings
from service.pipeline.dispatch import Dispatcher
from service.pipeline.records import SeriesUpdate
from service.pipeline.states import PendingStep, SeriesState
from service.pipeline.store import StateStore

S = SeriesState


class RecordingQueue:
    """A typed stand-in for the broker: remembers what would have been queued."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def denoise(self, uid: str) -> None:
        self.messages.append(("denoise", uid))

    def send(self, uid: str) -> None:
        self.messages.append(("send", uid))


def make(tmp_path: Path) -> tuple[Dispatcher, StateStore, RecordingQueue]:
    settings = load_settings(spool={"path": str(tmp_path)}, queue={"requeue_after_s": 50})
    store = StateStore(settings.database_url)
    queue = RecordingQueue()
    return Dispatcher(settings, store, queue.denoise, queue.send), store, queue


def test_complete_series_is_queued_exactly_once(tmp_path: Path) -> None:
    dispatcher, store, queue = make(tmp_path)
    store.record_instance(instance("1.2.3.1"))
    store.transition("1.2.3", S.COMPLETE, "count", expect=[S.RECEIVING])
    dispatcher.run_once(now=1000.0)
    dispatcher.run_once(now=1001.0)
    assert queue.messages == [("denoise", "1.2.3")]
    assert store.get("1.2.3").state is S.QUEUED


def test_dead_worker_lease_is_requeued(tmp_path: Path) -> None:
    dispatcher, store, queue = make(tmp_path)
    store.record_instance(instance("1.2.3.1"))
    store.transition("1.2.3", S.COMPLETE, "count", expect=[S.RECEIVING])
    dispatcher.run_once(now=1000.0)
    store.claim(
        "1.2.3",
        S.PROCESSING,
        expect=[S.QUEUED],
        lease_s=10,
        reason="w",
        step=PendingStep.DENOISE,
        now=1001.0,
    )
    dispatcher.run_once(now=1005.0)
    assert queue.messages == [("denoise", "1.2.3")]
    dispatcher.run_once(now=1012.0)
    assert queue.messages == [("denoise", "1.2.3"), ("denoise", "1.2.3")]
    assert store.get("1.2.3").state is S.QUEUED
    assert "lease expired in PROCESSING" in store.history("1.2.3")[-1].reason


def test_lost_send_message_is_requeued_as_send(tmp_path: Path) -> None:
    dispatcher, store, queue = make(tmp_path)
    store.record_instance(instance("1.2.3.1"))
    advance(store, "1.2.3", S.PROCESSING)
    store.transition(
        "1.2.3",
        S.WRITTEN,
        "w",
        expect=[S.PROCESSING],
        lease_s=50,
        update=SeriesUpdate(pending_step=PendingStep.SEND),
        now=1000.0,
    )
    dispatcher.run_once(now=1040.0)
    assert queue.messages == []
    dispatcher.run_once(now=1051.0)
    assert queue.messages == [("send", "1.2.3")]


def test_incomplete_failed_series_is_not_requeued(tmp_path: Path) -> None:
    dispatcher, store, queue = make(tmp_path)
    store.record_instance(instance("1.2.3.1"))
    store.transition(
        "1.2.3",
        S.FAILED,
        "incomplete",
        expect=[S.RECEIVING],
        update=SeriesUpdate(pending_step=PendingStep.COMPLETENESS),
    )
    dispatcher.run_once(now=10**10)
    assert queue.messages == []


def test_broker_outage_keeps_the_series_and_publishes_when_back(tmp_path: Path) -> None:
    """A real Celery publish to a Redis port nobody listens on, then a Redis that answers."""
    import shutil
    import subprocess

    import pytest
    import redis
    from support import free_port, wait_for

    from service.pipeline.tasks import configure_celery, enqueue_denoise

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    port = free_port()
    settings = load_settings(
        spool={"path": str(tmp_path)},
        queue={"broker_url": f"redis://127.0.0.1:{port}/0", "denoise_queue": "cpu-outage"},
    )
    configure_celery(settings)
    store = StateStore(settings.database_url)
    queue = RecordingQueue()
    dispatcher = Dispatcher(settings, store, lambda uid: enqueue_denoise(settings, uid), queue.send)
    store.record_instance(instance("1.2.3.1"))
    store.transition("1.2.3", S.COMPLETE, "count", expect=[S.RECEIVING])
    assert dispatcher.run_once(now=1000.0) == []  # broker down: nothing published, no raise
    down = store.get("1.2.3")
    assert down.state is S.QUEUED
    assert "broker unreachable" in down.state_reason
    assert down.lease_expires_at == 1010.0
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        assert wait_for(lambda: _pings(client), 15)
        assert dispatcher.run_once(now=1011.0) == [("1.2.3", "denoise")]
        assert client.llen("cpu-outage") == 1  # the message is in Redis now
    finally:
        server.terminate()
        server.wait(timeout=10)


def _pings(client) -> bool:  # type: ignore[no-untyped-def]
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
