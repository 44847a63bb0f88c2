"""Starting and stopping the node's parts: embedded Redis, listener, dispatcher, worker.

``unipet-node serve`` runs them all on one host; compose runs each as its own container via
``listener``/``worker``/``web``. Whatever is started here is stopped by its handle (a PID for
processes), never by name, so two nodes on one machine never stop each other's parts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import redis
import structlog
import yaml
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from service.config import NodeSettings
from service.errors import ConfigError, NodeError
from service.pipeline.completeness import CompletenessWatcher
from service.pipeline.dispatch import BackgroundLoop, Dispatcher
from service.pipeline.listener import start_listener
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore
from service.pipeline.tasks import configure_celery, enqueue_denoise, enqueue_send

log = structlog.stdlib.get_logger(__name__)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def wait_until(predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate()`` every ``interval_s`` until it is true or ``timeout_s`` has passed.

    Returns whether it became true: a bounded wait, never an endless one.
    """
    polling = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(interval_s),
        retry=retry_if_result(lambda ok: not ok),
        retry_error_callback=lambda _state: False,
    )
    return polling(lambda: bool(predicate()))


class EmbeddedRedis:
    """A private redis-server for the all-in-one node, persisted (AOF) in the spool folder."""

    def __init__(self, broker_url: str, data_dir: Path) -> None:
        url = urlparse(broker_url)
        if url.scheme != "redis" or (url.hostname or "") not in LOOPBACK_HOSTS:
            raise ConfigError(
                f"queue.broker_url: embedded Redis needs redis:// on loopback, got {broker_url}"
            )
        self.port = url.port or 6379
        self.url = broker_url
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> None:
        """Start redis-server and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError(
                "queue.embedded_redis: redis-server not found; install it (apt-get install "
                "redis-server) or set queue.embedded_redis=false and queue.broker_url"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--appendonly",
                "yes",
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)

        def ready() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        if not wait_until(ready, timeout_s):
            self.stop()
            raise NodeError(f"embedded redis-server did not answer on port {self.port}")
        log.info("embedded_redis_started", port=self.port, pid=self.process.pid)

    def stop(self) -> None:
        """Stop the server we started (by PID)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


def write_effective_config(settings: NodeSettings, path: Path) -> Path:
    """Write the settings a process runs with, so child processes get exactly the same."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False))
    return path


def worker_log_path(settings: NodeSettings) -> Path:
    """Where the all-in-one node's worker child writes its output and log events."""
    return settings.spool.path / "logs" / "worker.log"


def start_worker_process(
    config_path: Path, queues: list[str], log_path: Path, name: str | None = None
) -> subprocess.Popen[bytes]:
    """Start ``unipet-node worker`` as a child process (same interpreter).

    Its log events (stderr) go to ``log_path``, one JSON object per line; its stdout, where
    Celery only writes notes for a person at a terminal, is dropped. ``name`` is the Celery
    node name; give each worker on one host its own.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "service.cli",
        "worker",
        "--config",
        str(config_path),
        "--queues",
        ",".join(queues),
    ]
    if name is not None:
        command += ["--name", name]
    with log_path.open("ab") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=handle,
            env={**os.environ},
            start_new_session=True,  # its own process group: stopping it stops its children
        )


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM (Celery's warm shutdown), then SIGKILL if it does not exit in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)
    _kill_leftover_group(process.pid)


def _kill_leftover_group(pgid: int) -> None:
    """Kill pool children left in a worker's own process group (only ours, by group id)."""
    try:
        if os.getpgid(pgid) == pgid:
            os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return


@dataclass
class ListenerRole:
    """The listener process's parts: the SCP and the completeness/dispatch loop."""

    settings: NodeSettings
    spool: Spool = field(init=False)
    state: StateStore = field(init=False)

    def __post_init__(self) -> None:
        self.spool = Spool(self.settings.spool.path)
        self.state = StateStore(self.settings.database_url)
        configure_celery(self.settings)
        self.server = start_listener(self.settings, self.spool, self.state)
        self.loop = BackgroundLoop(
            self.settings,
            CompletenessWatcher(self.settings, self.state),
            Dispatcher(
                self.settings,
                self.state,
                lambda uid: enqueue_denoise(self.settings, uid),
                lambda uid: enqueue_send(self.settings, uid),
            ),
            clock=time.time,
            spool=self.spool,
        )
        self.loop.start()

    def stop(self) -> None:
        """Stop accepting associations, then stop the loop."""
        self.server.shutdown()
        self.loop.stop()
        self.state.close()


@dataclass
class AllInOneNode:
    """``unipet-node serve``: embedded Redis, listener + dispatcher, one worker process."""

    settings: NodeSettings
    worker_queues: list[str] | None = None
    redis: EmbeddedRedis | None = None
    listener: ListenerRole | None = None
    worker: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start every part; on failure, stop what was started."""
        root = self.settings.spool.path
        try:
            if self.settings.queue.embedded_redis:
                self.redis = EmbeddedRedis(self.settings.queue.broker_url, root / "redis")
                self.redis.start()
            config_path = write_effective_config(self.settings, root / "effective-config.yaml")
            queues = self.worker_queues or [
                self.settings.queue.denoise_queue,
                self.settings.queue.send_queue,
            ]
            self.worker = start_worker_process(config_path, queues, worker_log_path(self.settings))
            self.listener = ListenerRole(self.settings)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop in reverse order of start."""
        if self.listener is not None:
            self.listener.stop()
        if self.worker is not None:
            stop_process(self.worker)
        if self.redis is not None:
            self.redis.stop()
