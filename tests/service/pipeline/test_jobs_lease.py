"""A running job keeps its short lease by heartbeat; a dead one loses it within the lease."""

from __future__ import annotations

import time
from pathlib import Path

from state_samples import advance, instance

from service.config import load_settings
from service.pipeline.jobs import LeaseHeartbeat
from service.pipeline.spool import Spool
from service.pipeline.states import PendingStep, SeriesState
from service.pipeline.store import StateStore
from service.pipeline.worker_context import WorkerContext

S = SeriesState


def _context(tmp_path: Path) -> WorkerContext:
    settings = load_settings(
        spool={"path": str(tmp_path / "spool")},
        queue={"job_lease_s": 1.0, "heartbeat_s": 0.2},
    )
    return WorkerContext(settings, Spool(settings.spool.path), StateStore(settings.database_url))


def _processing(ctx: WorkerContext) -> None:
    ctx.state.record_instance(instance("1.2.3.1"))
    advance(ctx.state, "1.2.3", S.QUEUED)
    assert ctx.state.claim(
        "1.2.3", S.PROCESSING, expect=[S.QUEUED], lease_s=1.0, reason="r", step=PendingStep.DENOISE
    )


def test_a_live_job_outlasts_its_lease(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    _processing(ctx)
    with LeaseHeartbeat(ctx, "1.2.3", S.PROCESSING, PendingStep.DENOISE):
        time.sleep(2.5)  # longer than the lease: only the heartbeat keeps it
        lease = ctx.state.get("1.2.3").lease_expires_at
        assert lease is not None and lease > time.time()


def test_without_heartbeat_the_lease_runs_out(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    _processing(ctx)
    time.sleep(1.2)
    lease = ctx.state.get("1.2.3").lease_expires_at
    assert lease is not None and lease < time.time()


def test_default_lease_requeues_a_dead_workers_series_within_a_minute() -> None:
    queue = load_settings().queue
    assert queue.job_lease_s <= 60.0
    assert queue.heartbeat_s * 3 <= queue.job_lease_s
