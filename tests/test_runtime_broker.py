"""The embedded broker: its own Unix socket, and never someone else's Redis."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from support import free_port, wait_for

from service.errors import NodeError
from service.runtime import EmbeddedRedis


def _foreign_redis(*args: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    return subprocess.Popen(
        [binary, "--save", "", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def test_taken_tcp_port_does_not_put_the_node_on_a_foreign_broker(tmp_path: Path) -> None:
    port = free_port()
    foreign = _foreign_redis("--port", str(port), "--bind", "127.0.0.1")
    ours = EmbeddedRedis(tmp_path / "spool" / "redis")
    try:
        client = redis.Redis(port=port, socket_connect_timeout=1)
        assert wait_for(lambda: _pings(client), 10)
        ours.start()
        assert ours.url.startswith("redis+socket://")
        answering = redis.Redis(unix_socket_path=str(ours.socket_path))
        assert ours.process is not None
        assert int(answering.info("server")["process_id"]) == ours.process.pid != foreign.pid
    finally:
        ours.stop()
        foreign.terminate()
        foreign.wait(timeout=10)


def test_a_foreign_redis_on_our_socket_is_refused(tmp_path: Path) -> None:
    ours = EmbeddedRedis(tmp_path / "spool" / "redis")
    ours.socket_path.parent.mkdir(parents=True, exist_ok=True)
    foreign = _foreign_redis("--port", "0", "--unixsocket", str(ours.socket_path))
    try:
        client = redis.Redis(unix_socket_path=str(ours.socket_path), socket_connect_timeout=1)
        assert wait_for(lambda: _pings(client), 10)
        with pytest.raises(NodeError, match="another Redis already answers"):
            ours.start()
        assert ours.process is None
    finally:
        foreign.terminate()
        foreign.wait(timeout=10)


def test_deep_spool_paths_still_get_a_private_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "redis"
    ours = EmbeddedRedis(deep)
    assert len(str(ours.socket_path)) <= 100
    assert EmbeddedRedis(deep).socket_path == ours.socket_path
    assert EmbeddedRedis(tmp_path / "other").socket_path != ours.socket_path


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
