"""`unipet-node demo`, the README's main job, run as a user runs it (tiny volume)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread

from service.pipeline.inference import shipped_weights


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_demo_sends_a_study_through_unipet_and_shows_the_dose_estimate(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or shutil.which("storescp") is None:
        pytest.skip("needs redis-server and dcmtk (apt-get install redis-server dcmtk)")
    weights = shipped_weights()
    assert weights is not None
    card = json.loads(weights.with_suffix(".json").read_text())
    env = {**os.environ, "COLUMNS": "300"}
    result = subprocess.run(
        ["unipet-node", "demo", "--size", "tiny", "--workdir", str(tmp_path), "--timeout-s", "120"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout
    assert "estimated by the node from the images" in result.stdout
    received = [dcmread(p, stop_before_pixels=True) for p in (tmp_path / "pacs").rglob("*.dcm")]
    assert received
    equipment = received[0].ContributingEquipmentSequence[-1]
    assert equipment.ManufacturerModelName == "UniPET"
    assert list(equipment.SoftwareVersions) == [card["version"], card["weights_sha256"]]

    # What the terminal shows is for a person: no log event between progress and table.
    printed = (result.stdout + result.stderr).splitlines()
    assert [line for line in printed if _is_json_object(line.strip())] == []
    # The node's events are in files the table names, one JSON object per line.
    node_log = tmp_path / "logs" / "node.log"
    worker_log = tmp_path / "spool" / "logs" / "worker.log"
    assert str(node_log) in result.stdout
    assert str(worker_log) in result.stdout
    node_events = {str(e["event"]) for e in _events(node_log)}
    assert {"listener_started", "association_requested", "series_completeness"} <= node_events
    output_uid = str(received[0].SeriesInstanceUID)
    assert any(e.get("output_series_uid") == output_uid for e in _events(worker_log))


def test_demo_with_jpeg_ls_shows_a_compressed_study_end_to_end(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None or not Path("/usr/bin/dcmcjpls").exists():
        pytest.skip("needs redis-server and dcmtk (apt-get install redis-server dcmtk)")
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run(
        [
            *("unipet-node", "demo", "--size", "tiny", "--transfer-syntax", "jpeg-ls"),
            *("--workdir", str(tmp_path), "--timeout-s", "120"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED" in result.stdout
    assert "received and spooled: JPEG-LS Lossless Image Compression" in result.stdout
    syntaxes = {
        str(dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        for p in (tmp_path / "study").rglob("*.dcm")
    }
    assert "1.2.840.10008.1.2.4.80" in syntaxes
