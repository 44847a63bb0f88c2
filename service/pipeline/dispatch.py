"""The dispatcher: turns persisted state into queued jobs, and heals lost ones.

Runs in the listener process beside the completeness watcher. The state database, not the
broker, is the source of truth: a COMPLETE series is queued (compare-and-set to QUEUED first,
then the message), and any series whose lease ran out (its worker died, its message was lost
with a broker restart, its retry was never delivered) is queued again. Jobs are idempotent, so
a duplicate message costs a no-op; a missing one would cost a study.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import kombu.exceptions
import redis
import sqlalchemy.exc
import structlog

from service import metrics
from service.config import NodeSettings
from service.pipeline.completeness import CompletenessWatcher
from service.pipeline.records import SeriesUpdate, SeriesView
from service.pipeline.retention import purge_expired
from service.pipeline.spool import Spool
from service.pipeline.states import PendingStep, SeriesState
from service.pipeline.store import StateStore

log = structlog.stdlib.get_logger(__name__)

S = SeriesState
Enqueue = Callable[[str], None]

#: Errors of publishing a message while Redis is unreachable (kombu wraps redis-py's).
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.RedisError,
    OSError,
)

#: Outages a loop pass survives (logged; the next pass tries again).
LOOP_ERRORS: tuple[type[BaseException], ...] = (*BROKER_ERRORS, sqlalchemy.exc.OperationalError)

#: A message that could not be published is tried again after this long.
BROKER_RETRY_S = 10.0

#: How often the loop looks for finished series past their retention period.
PURGE_INTERVAL_S = 600.0


class Dispatcher:
    """Queues complete series and re-queues series whose lease expired."""

    def __init__(
        self,
        settings: NodeSettings,
        state: StateStore,
        enqueue_denoise: Enqueue,
        enqueue_send: Enqueue,
    ) -> None:
        self.settings = settings
        self.state = state
        self.enqueue_denoise = enqueue_denoise
        self.enqueue_send = enqueue_send

    def run_once(self, now: float) -> list[tuple[str, PendingStep]]:
        """One pass; returns (series UID, job) for every message it sent."""
        sent: list[tuple[str, PendingStep]] = []
        requeue_s = self.settings.queue.requeue_after_s
        for series in self.state.in_states([S.COMPLETE]):
            if self.state.transition(
                series.series_instance_uid,
                S.QUEUED,
                "queued for denoising",
                expect=[S.COMPLETE],
                lease_s=requeue_s,
                now=now,
                update=SeriesUpdate(pending_step=PendingStep.DENOISE),
            ) and self._publish(series.series_instance_uid, S.QUEUED, self.enqueue_denoise, now):
                sent.append((series.series_instance_uid, PendingStep.DENOISE))
        for series in self.state.in_states(
            [S.QUEUED, S.PROCESSING, S.FAILED, S.WRITTEN, S.SENDING]
        ):
            job = self._requeue_if_expired(series, now)
            if job is not None:
                sent.append((series.series_instance_uid, job))
        counts = self.state.count_by_state()
        metrics.jobs_queued.set(counts[S.COMPLETE] + counts[S.QUEUED] + counts[S.PROCESSING])
        metrics.dead_letter_series.set(counts[S.DEAD])
        return sent

    def _requeue_if_expired(self, series: SeriesView, now: float) -> PendingStep | None:
        """Queue the pending step again when its lease ran out (holder died, message lost)."""
        if series.lease_expires_at is None or series.lease_expires_at > now:
            return None
        if series.pending_step is PendingStep.DENOISE:
            target, enqueue = S.QUEUED, self.enqueue_denoise
        elif series.pending_step is PendingStep.SEND:
            target, enqueue = S.WRITTEN, self.enqueue_send
        else:
            return None
        changed = self.state.transition(
            series.series_instance_uid,
            target,
            f"lease expired in {series.state.value}: {series.pending_step.value} queued again",
            expect=[series.state],
            lease_s=self.settings.queue.requeue_after_s,
            now=now,
        )
        if changed is None:
            return None
        log.warning(
            "series_requeued",
            series_uid=series.series_instance_uid,
            step=series.pending_step.value,
            from_state=series.state.value,
        )
        if not self._publish(series.series_instance_uid, target, enqueue, now):
            return None
        return series.pending_step

    def _publish(self, uid: str, state: SeriesState, enqueue: Enqueue, now: float) -> bool:
        """Send the message; if the broker is down, keep the state and retry soon.

        The series stays in ``state`` with a short lease, so the next passes try again once
        the broker is back; nothing is lost, and the loop goes on with other series.
        """
        try:
            enqueue(uid)
        except BROKER_ERRORS as exc:
            log.error("enqueue_failed", series_uid=uid, error=exc)
            self.state.transition(
                uid,
                state,
                f"broker unreachable, retrying: {exc}"[:500],
                expect=[state],
                lease_s=BROKER_RETRY_S,
                now=now,
            )
            return False
        return True


class BackgroundLoop:
    """Runs completeness, dispatch (every ``poll_interval_s``) and retention in a thread."""

    def __init__(
        self,
        settings: NodeSettings,
        watcher: CompletenessWatcher,
        dispatcher: Dispatcher,
        clock: Callable[[], float],
        spool: Spool,
    ) -> None:
        self.interval_s = settings.completeness.poll_interval_s
        self.watcher = watcher
        self.dispatcher = dispatcher
        self.clock = clock
        self.spool = spool
        self.retention_days = settings.spool.retention_days
        self._last_purge_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unipet-dispatch", daemon=True)

    def start(self) -> None:
        """Start the loop thread."""
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the loop to stop and wait for it."""
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.tick()

    def tick(self) -> None:
        """One pass of both; a broker or database outage is logged and tried next pass."""
        now = self.clock()
        try:
            self.watcher.run_once(now)
            self.dispatcher.run_once(now)
            if now - self._last_purge_at >= PURGE_INTERVAL_S:
                self._last_purge_at = now
                purge_expired(self.dispatcher.state, self.spool, self.retention_days, now)
        except LOOP_ERRORS as exc:
            log.error("dispatch_pass_failed", error=str(exc), next_pass_in_s=self.interval_s)
