"""The status page and probe endpoints over real HTTP on 127.0.0.1, with a real state DB."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from matplotlib.image import imread
from pydicom import dcmread
from status_samples import DEAD_ERROR, PopulatedNode, populate
from support import free_port, wait_for

from service.config import NodeSettings, load_settings
from service.ops.thumbnails import THUMBNAIL_HEIGHT_PX, coronal_mip
from service.ops.web import WebServer, start_web
from service.pipeline.listener import start_listener
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore

Reply = tuple[int, dict[str, str], bytes]


def fetch(url: str, method: str = "GET") -> Reply:
    """One HTTP request with a bounded timeout; error statuses are returned, not raised."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def make_settings(tmp_path: Path, broker_url: str | None = None, **sections: Any) -> NodeSettings:
    """Loopback settings; the broker defaults to a closed port (an unreachable Redis)."""
    values: dict[str, Any] = {
        "listener": {
            "bind_address": "127.0.0.1",
            "port": free_port(),
            "allowed_calling_aets": ["SCANNER1", "SCANNER2"],
        },
        "spool": {"path": str(tmp_path / "spool"), "min_free_bytes": 1024**2},
        "queue": {
            "broker_url": broker_url or f"redis://127.0.0.1:{free_port()}/0",
            "embedded_redis": False,
        },
        "web": {"bind_address": "127.0.0.1", "port": 0},
        **sections,
    }
    return load_settings(**values)


@pytest.fixture
def populated(tmp_path: Path, tiny_study_dir: Path) -> tuple[NodeSettings, PopulatedNode]:
    settings = make_settings(tmp_path)
    return settings, populate(settings, tiny_study_dir)


@pytest.fixture
def web(populated: tuple[NodeSettings, PopulatedNode]) -> Iterator[WebServer]:
    server = start_web(populated[0])
    yield server
    server.stop()


def test_binds_an_ephemeral_port_when_configured_as_zero(web: WebServer) -> None:
    assert web.port > 0
    assert fetch(f"{web.url}/livez")[0] == 200


def test_page_lists_processed_and_dead_series(
    web: WebServer, populated: tuple[NodeSettings, PopulatedNode]
) -> None:
    node = populated[1]
    status, headers, body = fetch(web.url + "/")
    html = body.decode()
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert node.done_series_uid in html
    assert node.output_series_uid in html
    assert node.dead_series_uid in html
    assert 'class="badge s-DONE"' in html
    assert f"{node.input_instances} / {node.input_instances}" in html
    assert "18.7" in html
    assert '<meta http-equiv="refresh"' in html
    assert f"/thumbnails/{node.done_series_uid}/before.png" in html


def test_page_escapes_error_text(web: WebServer) -> None:
    html = fetch(web.url + "/")[2].decode()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert DEAD_ERROR.split(":")[0] in html


def test_no_patient_data_on_page_or_api(web: WebServer, tiny_study_dir: Path) -> None:
    ds = dcmread(sorted((tiny_study_dir / "drf20").glob("*.dcm"))[0], stop_before_pixels=True)
    identifiers = [str(ds.PatientName), str(ds.PatientID), str(ds.get("PatientBirthDate", ""))]
    identifiers += [str(ds.get("AccessionNumber", "")), str(ds.get("SeriesDescription", ""))]
    identifiers = [value for value in identifiers if len(value) >= 4]
    assert identifiers, "the sample study should carry patient data to look for"
    html = fetch(web.url + "/")[2].decode()
    api = fetch(web.url + "/api/status")[2].decode()
    for value in identifiers:
        assert value not in html
        assert value not in api


def test_thumbnails_are_inverted_grey_pngs_of_both_series(
    web: WebServer, populated: tuple[NodeSettings, PopulatedNode]
) -> None:
    uid = populated[1].done_series_uid
    images = {}
    for which in ("before", "after"):
        status, headers, body = fetch(f"{web.url}/thumbnails/{uid}/{which}.png")
        assert status == 200
        assert headers["Content-Type"] == "image/png"
        assert body.startswith(b"\x89PNG\r\n\x1a\n")
        images[which] = imread(io.BytesIO(body), format="png")[..., :3].mean(axis=2)
    before, after = images["before"], images["after"]
    assert before.shape == after.shape
    assert before.shape[0] == THUMBNAIL_HEIGHT_PX
    # Inverted grey: empty air around the body is white, uptake is darker.
    assert before[0, 0] == pytest.approx(1.0, abs=0.02)
    assert before.min() < 0.5
    # The Gaussian filter changed the image: the page shows a real before/after pair.
    assert float(np.abs(before - after).mean()) > 1e-3


def test_thumbnail_of_unknown_or_unprocessed_series_is_404(
    web: WebServer, populated: tuple[NodeSettings, PopulatedNode]
) -> None:
    dead = populated[1].dead_series_uid
    assert fetch(f"{web.url}/thumbnails/1.2.3.4/before.png")[0] == 404
    assert fetch(f"{web.url}/thumbnails/{dead}/after.png")[0] == 404
    assert fetch(f"{web.url}/thumbnails/1..2/after.png")[0] == 404
    assert fetch(f"{web.url}/thumbnails/../state.db")[0] == 404


def test_coronal_mip_is_head_up_with_patient_right_on_the_left() -> None:
    volume = np.zeros((10, 8, 6), dtype=np.float32)  # (z feet->head, y ant->post, x right->left)
    volume[9, 4, 0] = 100.0  # a hot voxel in the top slice, at the patient's right
    image = coronal_mip(volume, (2.0, 2.0, 2.0))
    row, column = np.unravel_index(int(np.argmax(image)), image.shape)
    assert row < image.shape[0] * 0.15
    assert column < image.shape[1] * 0.25
    assert image.shape[0] == THUMBNAIL_HEIGHT_PX
    assert image.shape[1] == round(THUMBNAIL_HEIGHT_PX * 6 / 10)


def test_read_only_methods_are_refused(web: WebServer) -> None:
    status, headers, _ = fetch(web.url + "/", method="POST")
    assert status == 405
    assert headers["Allow"] == "GET, HEAD"
    assert fetch(web.url + "/api/status", method="DELETE")[0] == 405
    head = fetch(web.url + "/", method="HEAD")
    assert head[0] == 200
    assert head[2] == b""


def test_security_headers_and_stylesheet(web: WebServer) -> None:
    status, headers, body = fetch(web.url + "/static/status.css")
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert b".badge" in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert fetch(web.url + "/no/such/page")[0] == 404


def test_api_status_matches_state(
    web: WebServer, populated: tuple[NodeSettings, PopulatedNode]
) -> None:
    report = json.loads(fetch(web.url + "/api/status")[2])
    assert report["counts"]["DONE"] == 1
    assert report["counts"]["DEAD"] == 1
    assert {row["series_uid"] for row in report["series"]} == {
        populated[1].done_series_uid,
        populated[1].dead_series_uid,
    }


def test_healthz_fails_fast_when_the_broker_is_down(web: WebServer) -> None:
    started = time.monotonic()
    status, headers, body = fetch(web.url + "/healthz")
    elapsed = time.monotonic() - started
    report = json.loads(body)
    assert status == 503
    assert headers["Content-Type"] == "application/json"
    assert report["status"] == "fail"
    assert report["checks"]["broker"]["ok"] is False
    assert report["checks"]["worker"]["ok"] is False
    assert report["checks"]["spool"]["ok"] is True
    assert elapsed < 5.0


def test_healthz_reports_spool_above_watermark(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, spool={"path": str(tmp_path / "spool"), "min_free_bytes": 2**60}
    )
    server = start_web(settings)
    try:
        report = json.loads(fetch(server.url + "/healthz")[2])
    finally:
        server.stop()
    assert report["checks"]["spool"]["ok"] is False
    assert "above watermark" in report["checks"]["spool"]["detail"]


def test_readyz_follows_the_listener(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    server = start_web(settings, health_cache_s=0.0)
    try:
        closed = json.loads(fetch(server.url + "/readyz")[2])
        spool, state = Spool(settings.spool.path), StateStore(settings.database_url)
        listener = start_listener(settings, spool, state)
        try:
            status, _, body = fetch(server.url + "/readyz")
        finally:
            listener.shutdown()
            state.close()
    finally:
        server.stop()
    assert closed["checks"]["listener"]["ok"] is False
    assert closed["checks"]["database"]["ok"] is True
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def _start_node_worker(settings: NodeSettings, tmp_path: Path) -> subprocess.Popen[bytes]:
    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "worker",
            "--config",
            str(config),
            "--queues",
            "web-test-cpu",
            "--concurrency",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_healthz_ok_with_broker_spool_and_a_real_worker(
    tmp_path: Path, private_redis_url: str
) -> None:
    settings = make_settings(tmp_path, broker_url=private_redis_url)
    server = start_web(settings, health_cache_s=0.0)
    worker = _start_node_worker(settings, tmp_path)
    try:

        def healthy() -> bool:
            return fetch(server.url + "/healthz")[0] == 200

        assert wait_for(healthy, 90.0, interval_s=0.5), "no worker answered the ping"
        report = json.loads(fetch(server.url + "/healthz")[2])
        metrics_text = fetch(server.url + "/metrics")[2].decode()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        server.stop()
    assert report["checks"]["worker"]["detail"].startswith("1 worker(s): unipet-web-test-cpu@")
    assert 'unipet_health_check_ok{check="worker"} 1.0' in metrics_text
    assert "unipet_workers_responding 1.0" in metrics_text
