"""Celery app and the two tasks: ``denoise_series`` and ``send_series``.

Tasks are thin: they call ``service.pipeline.jobs`` and turn its exceptions into the retry
policy (docs/architecture.md, "Retries"): transient errors are retried with exponential backoff
(state FAILED, with the error and the next try time visible), then the series goes DEAD (visible in
``unipet-node status``, metrics and the status page; ``dead-letter replay`` puts it back).
Errors that a retry cannot fix (a broken PET header) go DEAD at once. ``acks_late`` plus
``reject_on_worker_lost`` and the state-database leases mean a killed worker loses nothing.

Messages carry only the series UID: never pixel data or patient identifiers. Each task binds
that UID to its log context, so every event of the job (ours and the libraries') carries it.
"""

from __future__ import annotations

import random
from typing import Any

import structlog
from celery import Celery, Task
from celery.signals import worker_process_init
from sqlalchemy.exc import OperationalError

from service import metrics
from service.config import NodeSettings
from service.errors import InferenceError, InvalidTransitionError, PetHeaderError, SendError
from service.logs import bind_series
from service.pipeline.jobs import deliver, denoise
from service.pipeline.records import SeriesUpdate
from service.pipeline.states import PendingStep, SeriesState
from service.pipeline.worker_context import get_context, reset_process_resources

log = structlog.stdlib.get_logger(__name__)

celery_app = Celery("unipet")

#: Errors a later attempt may not hit (disk, database lock, device memory, network).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    OperationalError,
    InferenceError,
    SendError,
    MemoryError,
    TimeoutError,
)
#: Errors no retry can fix: go DEAD at once with the reason.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (PetHeaderError, InvalidTransitionError)


def configure_celery(settings: NodeSettings) -> Celery:
    """Apply the node's settings to the Celery app (called once per process at start)."""
    q = settings.queue
    if celery_app.conf.broker_url not in (None, q.broker_url):
        # Re-configured within one process (the demo, tests): drop pooled connections to the
        # previous broker, which Celery would otherwise keep using. Celery's own post-fork
        # hook is the one call that resets both its connection and producer pools.
        celery_app._after_fork()
    celery_app.conf.update(
        broker_url=q.broker_url,
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=q.worker_max_tasks_per_child,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        # Publishing must not hang the dispatcher while Redis is down: fail fast, the
        # dispatcher keeps the series and publishes again on a later pass.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        broker_transport_options={"visibility_timeout": q.visibility_timeout_s},
        task_default_queue=q.denoise_queue,
        task_routes={
            "unipet.denoise_series": {"queue": q.denoise_queue},
            "unipet.send_series": {"queue": q.send_queue},
        },
        task_serializer="json",
        accept_content=["json"],
        worker_send_task_events=False,
    )
    return celery_app


@worker_process_init.connect
def _after_fork(**_kwargs: Any) -> None:
    reset_process_resources()


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff with equal jitter: between half and all of the ceiling.

    The ceiling is ``base_s`` for attempt 1 and doubles with each attempt up to ``cap_s``;
    keeping the lower half fixed means a retry never comes almost at once, while the random
    upper half spreads the retries of series that failed together.
    """
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def _fail_or_die(
    task: Task, series_uid: str, step: PendingStep, exc: BaseException, max_retries: int
) -> None:
    """Record a failed attempt; schedule a retry (FAILED) or give up (DEAD)."""
    ctx = get_context()
    q = ctx.settings.queue
    series = ctx.state.get(series_uid)
    attempt = series.attempts
    running = [SeriesState.PROCESSING, SeriesState.SENDING]
    error = f"{step.value} attempt {attempt} failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, PERMANENT_ERRORS) or attempt > max_retries:
        verdict = "not retryable" if isinstance(exc, PERMANENT_ERRORS) else "retries spent"
        ctx.state.transition(
            series_uid,
            SeriesState.DEAD,
            f"{error} ({verdict})",
            expect=running,
            update=SeriesUpdate(last_error=error, pending_step=step),
        )
        metrics.series_processed_total.labels(outcome="dead").inc()
        metrics.dead_letter_series.set(len(ctx.state.in_states([SeriesState.DEAD])))
        log.error("series_dead", series_uid=series_uid, step=step.value, error=error)
        return
    countdown = backoff_s(attempt, q.retry_backoff_s, q.retry_backoff_max_s)
    ctx.state.transition(
        series_uid,
        SeriesState.FAILED,
        f"{error}; retry in {countdown:.0f} s",
        expect=running,
        lease_s=countdown + q.job_lease_s,
        update=SeriesUpdate(last_error=error, pending_step=step),
    )
    metrics.series_processed_total.labels(outcome="failed").inc()
    log.warning(
        "series_retry",
        series_uid=series_uid,
        step=step.value,
        attempt=attempt,
        countdown_s=countdown,
    )
    raise task.retry(exc=exc, countdown=countdown, max_retries=None)


@celery_app.task(bind=True, name="unipet.denoise_series", acks_late=True)
def denoise_series(self: Task, series_uid: str) -> dict[str, object]:
    """Denoise one complete series and, once written, queue its delivery."""
    ctx = get_context()
    with bind_series(series_uid):
        try:
            outcome = denoise(ctx, series_uid)
        except (*TRANSIENT_ERRORS, *PERMANENT_ERRORS) as exc:
            _fail_or_die(
                self, series_uid, PendingStep.DENOISE, exc, ctx.settings.queue.denoise_max_retries
            )
            return {"series_uid": series_uid, "done": False, "detail": "dead"}
    if outcome.done:
        send_series.apply_async(args=[series_uid], queue=ctx.settings.queue.send_queue)
    return outcome.as_dict()


@celery_app.task(bind=True, name="unipet.send_series", acks_late=True)
def send_series(self: Task, series_uid: str) -> dict[str, object]:
    """Deliver one written series to every destination still missing it."""
    ctx = get_context()
    with bind_series(series_uid):
        try:
            outcome = deliver(ctx, series_uid)
        except (*TRANSIENT_ERRORS, *PERMANENT_ERRORS) as exc:
            _fail_or_die(
                self, series_uid, PendingStep.SEND, exc, ctx.settings.queue.send_max_retries
            )
            return {"series_uid": series_uid, "done": False, "detail": "dead"}
    return outcome.as_dict()


def enqueue_denoise(settings: NodeSettings, series_uid: str) -> None:
    """Put a denoise job on the device queue."""
    denoise_series.apply_async(args=[series_uid], queue=settings.queue.denoise_queue)


def enqueue_send(settings: NodeSettings, series_uid: str) -> None:
    """Put a send job on the send queue."""
    send_series.apply_async(args=[series_uid], queue=settings.queue.send_queue)
