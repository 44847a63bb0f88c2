"""The quality report where operators look: status page link, PDF route, API, CLI status."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from status_samples import PopulatedNode, populate
from test_web import fetch, make_settings

from service.config import NodeSettings
from service.dicom.report import report_dir, write_quality_report
from service.dicom.report_identity import ReportTimes
from service.dicom.volume import load_pet_volume
from service.ops.web import WebServer, start_web
from service.pipeline.inference import GaussianDenoiser
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore


def _write_report(settings: NodeSettings, series_uid: str) -> None:
    """What the worker's report step does for the processed series of ``populate``."""
    spool, state = Spool(settings.spool.path), StateStore(settings.database_url)
    try:
        series = state.get(series_uid)
        assert series.output_key is not None
        received = load_pet_volume(
            [spool.path_of(i.spool_key) for i in state.instances(series_uid)]
        )
        series_dir = spool.path_of(series.output_key)
        write_quality_report(
            received,
            tuple(sorted(series_dir.glob("*.dcm"))),
            GaussianDenoiser(fwhm_mm=12.0).algorithm,
            report_dir(series_dir),
            drf_estimate=18.7,
            clipped_voxels=0,
            card=None,
            times=ReportTimes(series.first_received_at, series.completed_at, 0.1, None),
        )
    finally:
        state.close()


@pytest.fixture
def reported(tmp_path: Path, tiny_study_dir: Path) -> tuple[NodeSettings, PopulatedNode]:
    settings = make_settings(tmp_path)
    node = populate(settings, tiny_study_dir)
    _write_report(settings, node.done_series_uid)
    return settings, node


@pytest.fixture
def web(reported: tuple[NodeSettings, PopulatedNode]) -> Iterator[WebServer]:
    server = start_web(reported[0])
    yield server
    server.stop()


def test_page_links_the_pdf_and_the_route_serves_it(
    web: WebServer, reported: tuple[NodeSettings, PopulatedNode]
) -> None:
    node = reported[1]
    html = fetch(web.url + "/")[2].decode()
    link = f"/reports/{node.done_series_uid}/report.pdf"
    assert f'href="{link}"' in html
    status, headers, body = fetch(web.url + link)
    assert status == 200
    assert headers["Content-Type"] == "application/pdf"
    assert body.startswith(b"%PDF-")
    assert fetch(f"{web.url}/reports/{node.dead_series_uid}/report.pdf")[0] == 404
    assert fetch(f"{web.url}/reports/1.2.3/report.pdf")[0] == 404
    assert fetch(f"{web.url}/reports/../state.db")[0] == 404


def test_pdf_says_derived_and_holds_no_patient_data(
    web: WebServer, reported: tuple[NodeSettings, PopulatedNode], tiny_study_dir: Path
) -> None:
    body = fetch(f"{web.url}/reports/{reported[1].done_series_uid}/report.pdf")[2]
    text = subprocess.run(
        ["/usr/bin/pdftotext", "-", "-"], input=body, capture_output=True, timeout=60, check=True
    ).stdout.decode()
    assert "DERIVED IMAGES" in text
    assert "Ten hottest foci" in text
    ds = dcmread(sorted((tiny_study_dir / "drf20").glob("*.dcm"))[0], stop_before_pixels=True)
    for value in (str(ds.PatientName), str(ds.PatientID), str(ds.AccessionNumber)):
        assert value not in text


def test_api_and_cli_status_show_the_report(
    web: WebServer, reported: tuple[NodeSettings, PopulatedNode], tmp_path: Path
) -> None:
    settings, node = reported
    api = json.loads(fetch(web.url + "/api/status")[2])
    rows = {row["series_uid"]: row for row in api["series"]}
    report = rows[node.done_series_uid]["quality_report"]
    assert report["pdf"] == f"/reports/{node.done_series_uid}/report.pdf"
    assert report["foci"] > 0
    assert rows[node.dead_series_uid]["quality_report"] is None
    config = tmp_path / "node.yaml"
    config.write_text(f"spool:\n  path: {settings.spool.path}\n")
    env = {**os.environ, "COLUMNS": "250"}
    out = subprocess.run(
        ["unipet-node", "status", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
    ).stdout
    assert f"/{report['foci']} foci > 10 %" in out
