"""Patient identity goes through the node into the derived series, never into logs or metrics.

A study with a known patient name, ID and accession number is sent to ``unipet-node serve``
(listener, dispatcher and web in one process, the worker as its child), every log line those
processes write is read back, and so is ``/metrics``.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path

from pydicom import dcmread
from support import DcmtkPacs, free_port, port_open, stop_node, wait_for

from service.config import NodeSettings
from service.errors import SeriesNotFoundError
from service.ops import dcmtk
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore
from service.runtime import worker_log_path, write_effective_config

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PHI-TEST-4711"
ACCESSION_NUMBER = "ACC-PHI-4711"
#: Every form in which the identity could leak (the name's parts on their own, too).
PHI_NEEDLES = (PATIENT_NAME, "Jane", PATIENT_ID, ACCESSION_NUMBER)
SCANNER_AE_TITLE = "PHISCANNER"


def _label_with_patient(folder: Path) -> str:
    """Give every instance the known identity; return the Series Instance UID."""
    series_uid = ""
    for path in sorted(folder.glob("*.dcm")):
        ds = dcmread(path)
        ds.PatientName = PATIENT_NAME
        ds.PatientID = PATIENT_ID
        ds.AccessionNumber = ACCESSION_NUMBER
        ds.save_as(path)
        series_uid = str(ds.SeriesInstanceUID)
    return series_uid


def _events(path: Path) -> list[dict[str, object]]:
    """Each line of a log file as a JSON object (fails on any line a collector cannot parse)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, f"{path.name} is empty"
    events = [json.loads(line) for line in lines]
    for line, event in zip(lines, events, strict=True):
        assert isinstance(event, dict), line
        assert isinstance(event.get("event"), str), line
    return events


def _run_study_through_serve(
    settings: NodeSettings, config: Path, stderr_path: Path, folder: Path, series_uid: str
) -> tuple[SeriesState, str]:
    """Serve, send the folder, wait for the series to finish; return its state and /metrics."""
    with stderr_path.open("wb") as stderr:
        serve = subprocess.Popen(
            ["unipet-node", "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group: killed whole if it hangs
        )
    try:
        assert wait_for(
            lambda: port_open(settings.listener.port) and port_open(settings.web.port), 60
        )
        sent = dcmtk.storescu(
            folder,
            settings.listener.port,
            settings.listener.ae_title,
            SCANNER_AE_TITLE,
            timeout_s=120,
        )
        assert sent.returncode == 0, sent.stderr
        state = StateStore(settings.database_url)

        def finished() -> bool:
            try:
                return state.get(series_uid).state in {SeriesState.DONE, SeriesState.DEAD}
            except SeriesNotFoundError:
                return False

        wait_for(finished, 120, interval_s=0.2)
        final = state.get(series_uid).state
        state.close()
        url = f"http://127.0.0.1:{settings.web.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            metrics_text = response.read().decode()
    finally:
        stop_node(serve, stderr_path)  # no worker of it stays on the broker later tests use
    return final, metrics_text


def test_patient_identity_is_in_the_output_but_in_no_log_line_or_metric(
    settings_factory: Callable[..., NodeSettings],
    pacs: DcmtkPacs,
    study_copy: Path,
    tmp_path: Path,
) -> None:
    folder = study_copy / "drf20"
    series_uid = _label_with_patient(folder)
    # DEBUG: no PHI "at any level", and the most lines to search.
    settings = settings_factory(
        pacs.port,
        web={"bind_address": "127.0.0.1", "port": free_port()},
        logging={"level": "DEBUG"},
    )
    config = write_effective_config(settings, tmp_path / "node.yaml")
    node_log = tmp_path / "serve-stderr.log"
    final, metrics_text = _run_study_through_serve(settings, config, node_log, folder, series_uid)
    assert final is SeriesState.DONE

    # The identity did travel through the node: the derived series keeps the patient.
    received = [dcmread(p, stop_before_pixels=True) for p in pacs.files()]
    assert received
    assert {(str(ds.PatientName), str(ds.PatientID)) for ds in received} == {
        (PATIENT_NAME, PATIENT_ID)
    }

    node_events = _events(node_log)
    worker_events = _events(worker_log_path(settings))
    for name, text in (
        ("listener/dispatcher/web log", node_log.read_text(encoding="utf-8")),
        ("worker log", worker_log_path(settings).read_text(encoding="utf-8")),
        ("/metrics", metrics_text),
    ):
        for needle in PHI_NEEDLES:
            assert needle not in text, f"{needle!r} found in the {name}"

    # The logs are not empty of what matters: the series UID is a field, in both processes.
    assert any(e.get("series_uid") == series_uid for e in node_events)
    worker_series_events = {e["event"] for e in worker_events if e.get("series_uid") == series_uid}
    assert {"pet_volume_loaded", "series_written", "series_sent"} <= worker_series_events
    # The listener bound the peer to its association's events.
    assert any(
        e["event"] == "association_requested" and e.get("calling_aet") == SCANNER_AE_TITLE
        for e in node_events
    )
    assert f'calling_aet="{SCANNER_AE_TITLE}"' in metrics_text
