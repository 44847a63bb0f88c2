"""Starting and stopping the node's parts: embedded Redis, listener, dispatcher, worker.

``unipet-node serve`` runs them all on one host; compose runs each as its own container via
``listener``/``worker``/``web``. Whatever is started here is stopped by its handle (a PID for
processes), never by name, so two nodes on one machine never stop each other's parts.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
import structlog
import yaml
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from service.config import NodeSettings
from service.errors import ConfigError, NodeError
from service.pipeline.completeness import CompletenessWatcher
from service.pipeline.dispatch import BackgroundLoop, Dispatcher
from service.pipeline.listener import close_associations, start_listener
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore
from service.pipeline.tasks import configure_celery, enqueue_denoise, enqueue_send
from service.process import die_with_parent

log = structlog.stdlib.get_logger(__name__)


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


#: Longest path an AF_UNIX socket address holds on Linux (sun_path is 108 bytes with NUL).
_MAX_SOCKET_PATH = 100


class EmbeddedRedis:
    """A private redis-server for the all-in-one node on its own Unix socket (no TCP port).

    A fixed TCP port is shared by everything on the host: when it is taken our server exits,
    PING answers from someone else's Redis, and two nodes end up sharing queues. So the
    server listens only on a socket in the node's own folder (``port 0``), is persisted
    (AOF) there too, and after start we check that the process answering is the one we
    started (``INFO server`` reports its PID); otherwise the node refuses to start.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        socket_path = self.data_dir / "redis.sock"
        if len(str(socket_path)) > _MAX_SOCKET_PATH:
            # A deep spool path: a private folder named after it, still one per spool.
            digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
            socket_path = Path(tempfile.gettempdir()) / f"unipet-redis-{digest}" / "redis.sock"
        self.socket_path = socket_path
        self.url = f"redis+socket://{socket_path}?virtual_host=0"
        self.process: subprocess.Popen[bytes] | None = None

    def _client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket_path), socket_connect_timeout=1)

    def _answers(self) -> bool:
        try:
            return bool(self._client().ping())
        except (redis.RedisError, OSError):
            return False

    def start(self, timeout_s: float = 15.0) -> None:
        """Start redis-server on our socket and check that it, and nothing else, answers.

        Raises:
            ConfigError: redis-server is not installed.
            NodeError: the socket is served by another process (another node on this spool),
                or our server did not come up.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            raise ConfigError(
                "queue.embedded_redis: redis-server not found; install it (apt-get install "
                "redis-server) or set queue.embedded_redis=false and queue.broker_url"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._answers():
            raise NodeError(
                f"embedded broker: another Redis already answers on {self.socket_path}; is "
                "another node running on this spool?"
            )
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
                "--appendonly",
                "yes",
                "--dir",
                str(self.data_dir),
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        process = self.process
        if not wait_until(lambda: process.poll() is not None or self._answers(), timeout_s):
            self.stop()
            raise NodeError(f"embedded redis-server did not answer on {self.socket_path}")
        self._check_ours()
        log.info("embedded_redis_started", socket=str(self.socket_path), pid=process.pid)

    def _check_ours(self) -> None:
        """Refuse a broker whose answering process is not the one we started."""
        assert self.process is not None
        if self.process.poll() is not None:
            code = self.process.returncode
            self.process = None
            raise NodeError(
                f"embedded redis-server exited at start (code {code}); see {self.data_dir}"
            )
        try:
            answering_pid = int(self._client().info("server")["process_id"])
        except (redis.RedisError, OSError, KeyError, ValueError) as exc:
            self.stop()
            raise NodeError(
                f"embedded broker on {self.socket_path} cannot be verified: {exc}"
            ) from exc
        if answering_pid != self.process.pid:
            self.stop()
            raise NodeError(
                f"embedded broker: the Redis answering on {self.socket_path} is process "
                f"{answering_pid}, not ours ({self.process.pid}); refusing to share queues"
            )

    def kill(self) -> None:
        """SIGKILL the server we started (by PID), without waiting: the last resort."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

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
            preexec_fn=die_with_parent,
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


def kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child started with its own session, and its children, without waiting."""
    if process.poll() is None:
        process.kill()
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
        """Stop accepting associations, end the open ones, then stop the loop."""
        self.server.shutdown()
        close_associations(self.server)
        self.loop.stop()
        self.state.close()


def _timed(seconds: dict[str, float], name: str, step: Callable[[], None]) -> None:
    started = time.monotonic()
    step()
    seconds[name] = round(time.monotonic() - started, 2)


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
                self.redis = EmbeddedRedis(root / "redis")
                self.redis.start()
                # Every part (this process, the worker, the web page) uses our socket.
                queue = self.settings.queue.model_copy(update={"broker_url": self.redis.url})
                self.settings = self.settings.model_copy(update={"queue": queue})
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
        """Stop in reverse order of start; ``node_stopped`` logs the seconds each part took."""
        seconds: dict[str, float] = {}
        listener, worker, embedded_redis = self.listener, self.worker, self.redis
        if listener is not None:
            _timed(seconds, "listener_s", listener.stop)
        if worker is not None:
            _timed(seconds, "worker_s", lambda: stop_process(worker))
        if embedded_redis is not None:
            _timed(seconds, "redis_s", embedded_redis.stop)
        log.info("node_stopped", **seconds)

    def kill_children(self) -> None:
        """SIGKILL the worker (with its pool) and the embedded Redis: for an overdue stop."""
        if self.worker is not None:
            kill_process_group(self.worker)
        if self.redis is not None:
            self.redis.kill()
