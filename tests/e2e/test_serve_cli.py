"""`unipet-node serve` as an administrator starts it, checked with `unipet-node selftest`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest
from support import DcmtkPacs, descendants, free_port, port_open, stop_node, wait_for


def _config(
    tmp_path: Path, pacs: DcmtkPacs, listener_port: int, web_port: int, more: str = ""
) -> Path:
    """A node.yaml as an administrator writes it for ``serve`` (embedded broker)."""
    config = tmp_path / "node.yaml"
    config.write_text(
        f"listener: {{bind_address: 127.0.0.1, port: {listener_port}}}\n"
        f"destinations: [{{name: pacs, ae_title: {pacs.ae_title}, host: 127.0.0.1, "
        f"port: {pacs.port}}}]\n"
        f"spool: {{path: {tmp_path / 'spool'}, min_free_bytes: 0}}\n"
        f"web: {{bind_address: 127.0.0.1, port: {web_port}}}\n" + more
    )
    return config


def test_serve_with_embedded_redis_passes_selftest_and_stops_cleanly(
    pacs: DcmtkPacs, tmp_path: Path
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    listener_port, redis_port, web_port = free_port(), free_port(), free_port()
    config = _config(
        tmp_path,
        pacs,
        listener_port,
        web_port,
        # ignored while the embedded broker runs: this port must stay closed
        f"queue: {{broker_url: 'redis://127.0.0.1:{redis_port}/0'}}\n"
        "completeness: {poll_interval_s: 0.3}\n",
    )
    serve = subprocess.Popen(
        ["unipet-node", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "serve.log").open("wb"),
        start_new_session=True,
    )
    try:
        assert wait_for(lambda: port_open(listener_port) and port_open(web_port), 60)
        result = subprocess.run(
            ["unipet-node", "selftest", "--config", str(config), "--timeout-s", "120"],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "selftest passed" in result.stdout
        assert pacs.files(), "the derived series reached the destination"
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/api/status", timeout=10) as r:
            assert json.loads(r.read())["counts"]["DONE"] == 1
        worker_log = (tmp_path / "spool" / "logs" / "worker.log").read_text()
        policies = [
            event["wait_policy"]
            for event in (json.loads(line) for line in worker_log.splitlines() if line[:1] == "{")
            if event.get("event") == "worker_openmp"
        ]
        assert policies == [os.environ.get("OMP_WAIT_POLICY", "PASSIVE")]
    finally:
        stop_node(serve, tmp_path / "serve.log")
    assert serve.returncode == 0
    assert not port_open(redis_port), "the embedded redis-server was stopped with the node"
    assert not port_open(listener_port)


def _serve(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as stderr:
        return subprocess.Popen(
            ["unipet-node", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_node_killed_hard_takes_its_worker_and_broker_with_it_and_restarts(
    pacs: DcmtkPacs, tmp_path: Path
) -> None:
    """SIGKILL (the OOM killer, ``docker kill``) gives the node no chance to stop its children:
    the kernel must, or the worker keeps consuming and the embedded Redis keeps the spool's
    socket, and the restarted node refuses to start. SIGUSR1 first: stacks, and no stop."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    listener_port, web_port = free_port(), free_port()
    config = _config(tmp_path, pacs, listener_port, web_port)
    log_path = tmp_path / "serve.log"
    first = _serve(config, log_path)
    try:
        assert wait_for(lambda: port_open(listener_port) and port_open(web_port), 60)
        children = descendants(first.pid)
        assert len(children) >= 2, "an embedded redis-server and a worker"

        first.send_signal(signal.SIGUSR1)
        assert wait_for(lambda: "in wait_for_stop" in log_path.read_text(errors="replace"), 10)
        assert first.poll() is None and port_open(listener_port), "SIGUSR1 does not stop it"
    finally:
        first.kill()
        first.wait(timeout=30)
    try:
        assert wait_for(lambda: not any(_alive(pid) for pid in children), 30), (
            f"left running after the node was killed: {[p for p in children if _alive(p)]}"
        )
    finally:
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

    second = _serve(config, log_path)
    try:
        assert wait_for(lambda: port_open(listener_port) and port_open(web_port), 60), (
            log_path.read_text(errors="replace")[-4000:]
        )
    finally:
        stop_node(second, log_path)
