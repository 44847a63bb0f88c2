"""Health and readiness checks behind ``/healthz`` and ``/readyz``.

``/healthz`` answers "can this node do its work now?": the Redis broker answers PING, the spool
disk is inside its watermark (else the listener refuses with 0xA700), and at least one Celery
worker answers a broadcast ping. ``/readyz`` answers "can it take traffic?": the state database
answers a query and the listener accepts TCP connections.

Every probe has a short, fixed timeout, so a dead peer makes a check fail in about a second
instead of hanging the HTTP request (and the Docker healthcheck that waits on it). Results are
kept for ``cache_s`` seconds: Docker, Prometheus and a browser may ask at once, and one Celery
broadcast per few seconds is plenty. Each result is also written to the
``unipet_health_check_ok`` gauge so alert rules see what ``/healthz`` sees.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError
from sqlalchemy.exc import SQLAlchemyError

from service import metrics
from service.config import NodeSettings
from service.dicom.network import connect_host
from service.pipeline.spool import Spool
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore

__all__ = ["CheckResult", "HealthChecker", "listener_probe_address"]

PROBE_TIMEOUT_S = 1.0
#: How long check results are reused (see the module docstring).
DEFAULT_CACHE_S = 3.0


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one named check: passed or not, and a short, PHI-free detail."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"ok": self.ok, "detail": self.detail}


def listener_probe_address(settings: NodeSettings) -> tuple[str, int]:
    """Where to knock to see that the listener accepts connections.

    A wildcard bind address means "this host": probe loopback. Compose gives the web
    container ``listener.bind_address: listener`` (the listener's service name) instead.
    """
    return connect_host(settings.listener.bind_address), settings.listener.port


def _gib(size_bytes: int) -> str:
    return f"{size_bytes / 1024**3:.2f} GiB"


class HealthChecker:
    """Runs the checks with bounded timeouts and caches each group for ``cache_s`` seconds."""

    def __init__(
        self,
        settings: NodeSettings,
        spool: Spool,
        state: StateStore,
        cache_s: float = DEFAULT_CACHE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._spool = spool
        self._state = state
        self._cache_s = cache_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, list[CheckResult]]] = {}
        self._celery = Celery("unipet-web", broker=settings.queue.broker_url)
        self._celery.conf.update(
            broker_connection_retry=False,
            broker_connection_max_retries=0,
            broker_connection_timeout=PROBE_TIMEOUT_S,
            broker_transport_options={
                "socket_connect_timeout": PROBE_TIMEOUT_S,
                "socket_timeout": PROBE_TIMEOUT_S,
                "max_retries": 1,
                "interval_start": 0.1,
                "interval_step": 0.1,
                "interval_max": 0.2,
            },
        )

    def health(self) -> list[CheckResult]:
        """Broker, spool watermark and worker heartbeat."""
        return self._cached("health", self._health)

    def _health(self) -> list[CheckResult]:
        broker = self.broker()
        if broker.ok:
            worker = self.worker()
        else:
            metrics.workers_responding.set(0)
            worker = CheckResult("worker", False, "not pinged: broker unreachable")
        return [broker, self.spool(), worker]

    def readiness(self) -> list[CheckResult]:
        """State database and listener port."""
        return self._cached("ready", lambda: [self.database(), self.listener()])

    def _cached(self, group: str, run: Callable[[], list[CheckResult]]) -> list[CheckResult]:
        with self._lock:
            now = self._clock()
            hit = self._cache.get(group)
            if hit is not None and now - hit[0] < self._cache_s:
                return hit[1]
            results = run()
            self._cache[group] = (now, results)
        for result in results:
            metrics.health_check_ok.labels(check=result.name).set(1.0 if result.ok else 0.0)
        return results

    def broker(self) -> CheckResult:
        """Redis broker answers PING."""
        client = redis.Redis.from_url(
            self._settings.queue.broker_url,
            socket_connect_timeout=PROBE_TIMEOUT_S,
            socket_timeout=PROBE_TIMEOUT_S,
        )
        try:
            client.ping()
        except redis.RedisError as exc:
            return CheckResult("broker", False, f"redis unreachable: {type(exc).__name__}")
        finally:
            client.close()
        return CheckResult("broker", True, "redis answered PING")

    def spool(self) -> CheckResult:
        """Free space and used fraction inside the admission watermark."""
        spool_settings = self._settings.spool
        free = self._spool.free_bytes()
        used = self._spool.used_fraction()
        metrics.spool_free_bytes.set(free)
        metrics.spool_min_free_bytes.set(spool_settings.min_free_bytes)
        ok = free >= spool_settings.min_free_bytes and used <= spool_settings.max_used_fraction
        verdict = "within" if ok else "above"
        return CheckResult(
            "spool",
            ok,
            f"{verdict} watermark: {_gib(free)} free (minimum {_gib(spool_settings.min_free_bytes)}"
            f"), {used:.1%} used (maximum {spool_settings.max_used_fraction:.0%})",
        )

    def worker(self) -> CheckResult:
        """At least one Celery worker answers a broadcast ping within the probe timeout."""
        try:
            replies = self._celery.control.ping(timeout=PROBE_TIMEOUT_S)
        except (KombuOperationalError, OSError, redis.RedisError) as exc:
            metrics.workers_responding.set(0)
            return CheckResult("worker", False, f"cannot ping workers: {type(exc).__name__}")
        names = sorted(name for reply in replies for name in reply)
        metrics.workers_responding.set(len(names))
        if not names:
            return CheckResult("worker", False, "no worker answered the heartbeat ping")
        return CheckResult("worker", True, f"{len(names)} worker(s): {', '.join(names)}")

    def database(self) -> CheckResult:
        """The state database answers a query."""
        try:
            counts = self._state.count_by_state()
        except SQLAlchemyError as exc:
            return CheckResult("database", False, f"state database error: {type(exc).__name__}")
        metrics.dead_letter_series.set(counts[SeriesState.DEAD])
        return CheckResult("database", True, f"{sum(counts.values())} series recorded")

    def listener(self) -> CheckResult:
        """The listener accepts a TCP connection (no association is opened)."""
        host, port = listener_probe_address(self._settings)
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                pass
        except OSError as exc:
            return CheckResult("listener", False, f"port {port} not accepting: {exc.strerror}")
        return CheckResult("listener", True, f"port {port} accepting")

    def close(self) -> None:
        """Release the broker connection pool of the control client."""
        self._celery.close()
