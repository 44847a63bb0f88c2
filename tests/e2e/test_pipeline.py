"""storescu -> node -> storescp, with the real Celery worker process, Redis and dcmtk."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from support import DcmtkPacs, NodeFactory, free_port, wait_for

from service.dicom import pet
from service.errors import SeriesNotFoundError
from service.ops import dcmtk
from service.pipeline.inference import load_denoiser
from service.pipeline.states import PendingStep, SeriesState
from service.pipeline.store import StateStore
from service.runtime import (
    ListenerRole,
    start_worker_process,
    stop_process,
    write_effective_config,
)

DCIODVFY = "/usr/bin/dciodvfy"
#: For tests of the flow rather than of the denoiser: the Gaussian backend takes a fraction
#: of UniPET's CPU time, and the worker starts without loading the network.
FAST = {"backend": "gaussian"}


def storescu(
    folder: Path, port: int, calling_aet: str = "SCANNER"
) -> subprocess.CompletedProcess[str]:
    """Send a folder like a scanner: dcmtk storescu, one association."""
    return dcmtk.storescu(folder, port, "UNIPET", calling_aet, timeout_s=120)


def series_uid_of(folder: Path) -> str:
    return str(dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID)


def wait_state(
    state: StateStore, uid: str, wanted: set[SeriesState], timeout_s: float
) -> SeriesState:
    def reached() -> bool:
        try:
            return state.get(uid).state in wanted
        except SeriesNotFoundError:
            return False

    wait_for(reached, timeout_s, interval_s=0.1)
    return state.get(uid).state


def test_low_dose_series_comes_back_as_labelled_derived_series(
    node_factory: NodeFactory, pacs: DcmtkPacs, study_copy: Path
) -> None:
    _node, settings = node_factory(pacs.port)
    # The node's default backend: UniPET from the shipped weights (the Gaussian filter only
    # when a build ships none); the output must name exactly that algorithm and file.
    expected_algorithm = load_denoiser(settings.model).algorithm
    sent_folder = study_copy / "drf20"
    sources = {
        str(ds.SOPInstanceUID): ds
        for ds in (dcmread(p, stop_before_pixels=True) for p in sent_folder.glob("*.dcm"))
    }
    before = {p.name: p.read_bytes() for p in sent_folder.glob("*.dcm")}
    result = storescu(sent_folder, settings.listener.port)
    assert result.returncode == 0, result.stderr
    state = StateStore(settings.database_url)
    uid = series_uid_of(sent_folder)
    assert wait_state(state, uid, {SeriesState.DONE, SeriesState.DEAD}, 90) is SeriesState.DONE
    series = state.get(uid)
    assert series.completeness_reason.startswith("count:")
    received = [dcmread(p) for p in pacs.images()]
    assert len(received) == len(sources)
    # The quality report travels with the series: one SR and one Encapsulated PDF, same study.
    reports = [dcmread(p, stop_before_pixels=True) for p in pacs.reports()]
    assert sorted(str(ds.Modality) for ds in reports) == ["DOC", "SR"]
    assert {str(ds.StudyInstanceUID) for ds in reports} == {
        str(first.StudyInstanceUID) for first in sources.values()
    }
    assert {str(ds.SeriesInstanceUID) for ds in received} == {series.output_series_uid}
    first_source = next(iter(sources.values()))
    for ds in received:
        # PS3.3 C.8.9.4.1.1: a PET image's Image Type value 2 shall be PRIMARY.
        assert list(ds.ImageType)[:2] == ["DERIVED", "PRIMARY"]
        assert ds.StudyInstanceUID == first_source.StudyInstanceUID
        assert ds.FrameOfReferenceUID == first_source.FrameOfReferenceUID
        assert ds.SeriesInstanceUID != first_source.SeriesInstanceUID
        assert ds.SeriesDescription.endswith("[UniPET]")
        equipment = ds.ContributingEquipmentSequence[-1]
        assert equipment.ManufacturerModelName == expected_algorithm.name
        # LO is at most 64 characters: the version and the sha256 are two values.
        assert list(equipment.SoftwareVersions) == [
            expected_algorithm.version,
            expected_algorithm.weights_sha256,
        ]
        assert equipment.DeviceUID == expected_algorithm.device_uid
        source_uid = str(ds.SourceImageSequence[0].ReferencedSOPInstanceUID)
        source = sources[source_uid]
        assert pet.slice_position_mm(ds) == pytest.approx(pet.slice_position_mm(source))
        assert pet.suv_bw_factor(ds) == pytest.approx(pet.suv_bw_factor(source), rel=1e-9)
        assert ds.Units == "BQML"
    # The originals we sent are untouched, byte for byte.
    assert {p.name: p.read_bytes() for p in sent_folder.glob("*.dcm")} == before
    if Path(DCIODVFY).exists():
        report = subprocess.run(
            [DCIODVFY, str(pacs.images()[0])],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        errors = [line for line in report.stderr.splitlines() if line.startswith("Error")]
        assert errors == []


def test_series_sent_twice_gives_one_output_series_with_the_same_uids(
    node_factory: NodeFactory, pacs: DcmtkPacs, study_copy: Path
) -> None:
    _node, settings = node_factory(pacs.port, model=FAST)
    folder = study_copy / "drf20"
    uid = series_uid_of(folder)
    state = StateStore(settings.database_url)
    assert storescu(folder, settings.listener.port).returncode == 0
    assert wait_state(state, uid, {SeriesState.DONE, SeriesState.DEAD}, 90) is SeriesState.DONE
    first = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in pacs.images()}
    first_output = state.get(uid).output_series_uid
    for path in pacs.images():
        path.unlink()
    assert storescu(folder, settings.listener.port).returncode == 0
    assert wait_for(lambda: len([h for h in state.history(uid) if h.to_state == "DONE"]) == 2, 90)
    second = [dcmread(p, stop_before_pixels=True) for p in pacs.images()]
    assert {str(ds.SOPInstanceUID) for ds in second} == first
    assert {str(ds.SeriesInstanceUID) for ds in second} == {first_output}
    reasons = [h.reason for h in state.history(uid) if h.to_state == "RECEIVING"]
    assert any("re-sent instance after DONE" in r for r in reasons)


def test_worker_killed_mid_job_is_resumed_after_restart(
    node_factory: NodeFactory, pacs: DcmtkPacs, study_copy: Path
) -> None:
    node, settings = node_factory(pacs.port, queue={"job_lease_s": 3.0, "heartbeat_s": 1.0})
    folder = study_copy / "drf20"
    uid = series_uid_of(folder)
    state = StateStore(settings.database_url)
    assert node.worker is not None
    # Freeze the worker before the series arrives, so it is mid-job when we kill it.
    assert wait_for(lambda: _worker_ready(settings), 30)
    assert storescu(folder, settings.listener.port).returncode == 0
    assert (
        wait_state(state, uid, {SeriesState.PROCESSING, SeriesState.DONE}, 60)
        is SeriesState.PROCESSING
    )
    os.killpg(node.worker.pid, signal.SIGKILL)
    node.worker.wait(timeout=10)
    assert state.get(uid).state is SeriesState.PROCESSING
    assert pacs.images() == []
    config = write_effective_config(settings, settings.spool.path / "restart-config.yaml")
    node.worker = start_worker_process(
        config,
        [settings.queue.denoise_queue, settings.queue.send_queue],
        settings.spool.path / "logs" / "worker2.log",
    )
    assert wait_state(state, uid, {SeriesState.DONE, SeriesState.DEAD}, 90) is SeriesState.DONE
    history = state.history(uid)
    assert any("lease expired in PROCESSING" in h.reason for h in history)
    assert len(pacs.images()) == len(list(folder.glob("*.dcm")))


def _worker_ready(settings) -> bool:  # type: ignore[no-untyped-def]
    log = settings.spool.path / "logs" / "worker.log"
    return log.exists() and "ready." in log.read_text(errors="replace")


def test_destination_down_goes_dead_and_replay_delivers(
    node_factory: NodeFactory, tmp_path: Path, study_copy: Path
) -> None:
    down_port = free_port()
    _node, settings = node_factory(down_port, model=FAST, queue={"send_max_retries": 1})
    folder = study_copy / "drf20"
    uid = series_uid_of(folder)
    state = StateStore(settings.database_url)
    assert storescu(folder, settings.listener.port).returncode == 0
    assert wait_state(state, uid, {SeriesState.DEAD, SeriesState.DONE}, 90) is SeriesState.DEAD
    dead = state.get(uid)
    assert "send attempt 2 failed" in dead.last_error
    assert dead.pending_step is PendingStep.SEND
    config = write_effective_config(settings, tmp_path / "cli.yaml")
    listed = subprocess.run(
        ["unipet-node", "dead-letter", "list", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert uid in listed.stdout
    pacs = DcmtkPacs(tmp_path / "late-pacs", down_port)
    try:
        subprocess.run(
            ["unipet-node", "dead-letter", "replay", uid, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert wait_state(state, uid, {SeriesState.DONE}, 90) is SeriesState.DONE
        assert len(pacs.images()) == len(list(folder.glob("*.dcm")))
    finally:
        pacs.stop()


def test_listener_restart_keeps_a_half_received_series(
    node_factory: NodeFactory, pacs: DcmtkPacs, study_copy: Path
) -> None:
    node, settings = node_factory(pacs.port, model=FAST, completeness={"quiet_period_s": 60.0})
    folder = study_copy / "drf20"
    files = sorted(folder.glob("*.dcm"))
    first_half, second_half = study_copy / "half1", study_copy / "half2"
    first_half.mkdir()
    second_half.mkdir()
    for index, path in enumerate(files):
        path.rename((first_half if index % 2 else second_half) / path.name)
    uid = series_uid_of(first_half)
    assert storescu(first_half, settings.listener.port).returncode == 0
    state = StateStore(settings.database_url)
    assert state.get(uid).state is SeriesState.RECEIVING
    assert node.listener is not None
    node.listener.stop()
    node.listener = ListenerRole(settings)
    assert state.get(uid).received_instances == len(list(first_half.glob("*.dcm")))
    assert storescu(second_half, settings.listener.port).returncode == 0
    assert wait_state(state, uid, {SeriesState.DONE, SeriesState.DEAD}, 90) is SeriesState.DONE
    assert len(pacs.images()) == len(files)


def test_two_workers_share_the_queue_and_never_process_a_series_twice(
    node_factory: NodeFactory, pacs: DcmtkPacs, study_copy: Path
) -> None:
    _node, settings = node_factory(pacs.port, model=FAST)
    config = write_effective_config(settings, settings.spool.path / "second-worker.yaml")
    second = start_worker_process(
        config,
        [settings.queue.denoise_queue, settings.queue.send_queue],
        settings.spool.path / "logs" / "second-worker.log",
        name="unipet-second@%h",
    )
    try:
        folders = [study_copy / name for name in ("full", "drf20", "drf50")]
        uids = [series_uid_of(folder) for folder in folders]
        for folder in folders:
            assert storescu(folder, settings.listener.port).returncode == 0
        state = StateStore(settings.database_url)
        for uid in uids:
            assert (
                wait_state(state, uid, {SeriesState.DONE, SeriesState.DEAD}, 120)
                is SeriesState.DONE
            )
        for uid in uids:
            claims = [h for h in state.history(uid) if h.to_state == "PROCESSING"]
            assert len(claims) == 1, f"{uid} was processed {len(claims)} times"
        outputs = {
            str(dcmread(p, stop_before_pixels=True).SeriesInstanceUID) for p in pacs.images()
        }
        assert outputs == {state.get(uid).output_series_uid for uid in uids}
        assert len(pacs.images()) == sum(len(list(f.glob("*.dcm"))) for f in folders)
    finally:
        stop_process(second)
