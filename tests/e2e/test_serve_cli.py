"""`unipet-node serve` as an administrator starts it, checked with `unipet-node selftest`."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from support import DcmtkPacs, free_port, port_open, stop_node, wait_for


def test_serve_with_embedded_redis_passes_selftest_and_stops_cleanly(
    pacs: DcmtkPacs, tmp_path: Path
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    listener_port, redis_port, web_port = free_port(), free_port(), free_port()
    config = tmp_path / "node.yaml"
    config.write_text(
        f"listener: {{bind_address: 127.0.0.1, port: {listener_port}}}\n"
        f"destinations: [{{name: pacs, ae_title: {pacs.ae_title}, host: 127.0.0.1, "
        f"port: {pacs.port}}}]\n"
        f"spool: {{path: {tmp_path / 'spool'}, min_free_bytes: 0}}\n"
        f"queue: {{broker_url: 'redis://127.0.0.1:{redis_port}/0'}}\n"
        "completeness: {poll_interval_s: 0.3}\n"
        f"web: {{bind_address: 127.0.0.1, port: {web_port}}}\n"
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
    finally:
        stop_node(serve)
    assert serve.returncode == 0
    assert not port_open(redis_port), "the embedded redis-server was stopped with the node"
    assert not port_open(listener_port)
