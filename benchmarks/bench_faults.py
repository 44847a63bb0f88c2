"""Faults with real processes: nothing acknowledged is lost, nothing delivered twice.

    python benchmarks/bench_faults.py --size tiny    # CI: 56-slice series of 40x40
    python benchmarks/bench_faults.py --size small

One node made of separate processes (``unipet-node listener``, ``unipet-node worker``, a
redis-server) sends to a recording PACS (pynetdicom SCP, every C-STORE it receives is
counted). Each fault is injected into a fresh copy of the series (new UIDs) and the table
shows instances sent, acknowledged (Success at the sender), processed (output instances of
the series), delivered (distinct derived SOP Instance UIDs at the PACS), received (every
C-STORE of the derived series at the PACS, repeats included), lost (acknowledged but neither
delivered nor visibly parked DEAD/REJECTED with a reason), duplicated (more distinct derived
UIDs at the PACS than input slices), runs (how often a worker took the series into
PROCESSING) and the time from the fault to DONE.
Exits 1 when anything is lost or duplicated. The Gaussian backend keeps it quick (the
denoiser is not what is tested here); leases are shortened to 6 s so a killed worker's
series comes back within seconds (the default lease is 60 s).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import
    PositronEmissionTomographyImageStorage,
    Verification,
)

from service.config import load_settings
from service.dicom.synthetic import write_simulated_study
from service.ops.demo import free_port
from service.pipeline.inference import simulate_study
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore
from service.runtime import wait_until

PET = PositronEmissionTomographyImageStorage
S = SeriesState
FINAL = {S.DONE, S.DEAD, S.REJECTED}


class RecordingPacs:
    """A PACS that counts every instance it stores; can be switched off, on, or strict."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: list[tuple[str, str]] = []  # (series uid, sop uid), every C-STORE
        self._lock = threading.Lock()
        self.server: object | None = None

    def _store(self, event: Event) -> int:
        ds = event.dataset
        with self._lock:
            self.received.append((str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)))
        return 0x0000

    def start(self, reject_us: bool = False) -> None:
        ae = AE(ae_title="RECPACS")
        if reject_us:
            ae.require_calling_aet = ["SOMEONEELSE"]
        # Every storage class: the derived images and the quality report (SR, PDF) beside.
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)]
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()  # type: ignore[attr-defined]
            self.server = None

    def distinct(self, output_series_uid: str | None) -> tuple[int, int]:
        """(distinct SOP UIDs, all receptions) of one derived series."""
        with self._lock:
            mine = [sop for series, sop in self.received if series == output_series_uid]
        return len(set(mine)), len(mine)


class Node:
    """Listener, worker and redis-server as separate processes, each killable by PID."""

    def __init__(self, work: Path, pacs_port: int) -> None:
        self.work = work
        self.socket = Path(tempfile.mkdtemp(prefix="faults-redis-")) / "redis.sock"
        settings = load_settings(
            listener={"bind_address": "127.0.0.1", "port": free_port()},
            destinations=[
                {"name": "pacs", "ae_title": "RECPACS", "host": "127.0.0.1", "port": pacs_port}
            ],
            spool={"path": str(work / "spool"), "min_free_bytes": 0, "max_used_fraction": 1.0},
            queue={
                "broker_url": f"redis+socket://{self.socket}?virtual_host=0",
                "embedded_redis": False,
                "job_lease_s": 6.0,
                "heartbeat_s": 2.0,
                "requeue_after_s": 6.0,
                "retry_backoff_s": 0.5,
                "retry_backoff_max_s": 2.0,
            },
            completeness={"quiet_period_s": 2.0, "poll_interval_s": 0.2},
            model={"backend": "gaussian"},
            sender={"network_timeout_s": 5.0, "acse_timeout_s": 5.0, "dimse_timeout_s": 10.0},
        )
        self.settings = settings
        self.config = work / "node.yaml"
        self.config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
        self.port = settings.listener.port
        self.redis = self.start_redis()
        self.listener = self.start_listener()
        self.worker = self.start_worker()
        self.state = StateStore(settings.database_url)

    def start_redis(self) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--appendonly",
                "yes",
                "--dir",
                str(self.socket.parent),
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.socket.exists, 15)
        return process

    def _cli(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        handle = (self.work / log).open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args, "--config", str(self.config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_listener(self) -> subprocess.Popen[bytes]:
        process = self._cli("listener", log="listener.log")
        wait_until(lambda: _echo(self.port), 60, 0.2)
        return process

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = self.work / "worker.log"
        before = log.read_text(errors="replace").count("ready.") if log.exists() else 0
        process = self._cli("worker", log="worker.log")
        wait_until(lambda: log.read_text(errors="replace").count("ready.") > before, 90, 0.2)
        return process

    def pool_children(self) -> list[int]:
        """PIDs of the worker's prefork pool processes (children of the Celery parent)."""
        children: list[int] = []
        for task in Path(f"/proc/{self.worker.pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError):
                children += [int(pid) for pid in (task / "children").read_text().split()]
        return children

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """kill -9 the process and its own group (a worker's pool children)."""
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in (self.listener, self.worker):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.kill(process)
            self.kill_group_leftovers(process)
        self.redis.terminate()
        self.redis.wait(timeout=10)
        self.state.close()

    @staticmethod
    def kill_group_leftovers(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _echo(port: int) -> bool:
    ae = AE(ae_title="FAULTS")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 2
    assoc = ae.associate("127.0.0.1", port, ae_title="UNIPET")
    if not assoc.is_established:
        return False
    ok = int(assoc.send_c_echo().get("Status", -1)) == 0
    assoc.release()
    return ok


def send(port: int, paths: list[Path], acked: set[str], stop_after: int | None = None) -> None:
    """One association; every Success adds the SOP Instance UID to ``acked``."""
    ae = AE(ae_title="SCANNER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(PET, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="UNIPET")
    if not assoc.is_established:
        return
    try:
        for index, path in enumerate(paths):
            if stop_after is not None and index >= stop_after:
                break
            ds = dcmread(path)
            try:
                status = assoc.send_c_store(ds)
            except (RuntimeError, ValueError):
                break
            if int(status.get("Status", -1)) == 0x0000:
                acked.add(str(ds.SOPInstanceUID))
            if not assoc.is_established:
                break
    finally:
        if assoc.is_established:
            assoc.release()


def fresh_series(template: Path, target: Path) -> tuple[list[Path], str]:
    """A copy of the series with new Study/Series/SOP Instance UIDs."""
    target.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for path in sorted(template.glob("*.dcm")):
        ds = dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        out = target / path.name
        ds.save_as(out)
        paths.append(out)
    return paths, series


@dataclass
class Row:
    fault: str
    sent: int
    acked: int
    processed: int
    delivered: int
    lost: int
    duplicated: int
    state: str
    recover_s: float | None
    received: int = 0
    runs: int = 0


def measure(
    fault: str,
    node: Node,
    pacs: RecordingPacs,
    paths: list[Path],
    uid: str,
    acked: set[str],
    fault_at: float,
    timeout_s: float,
) -> Row:
    wait_until(lambda: _state(node, uid) in FINAL, timeout_s, 0.2)
    state = _state(node, uid)
    done_at = time.time()
    series = node.state.get(uid) if state is not None else None
    recorded = {i.sop_instance_uid for i in node.state.instances(uid)} if series else set()
    processed = (series.output_instances or 0) if series and state is S.DONE else 0
    delivered, receptions = pacs.distinct(series.output_series_uid if series else None)
    runs = sum(1 for h in node.state.history(uid) if h.to_state == S.PROCESSING.value)
    parked = state in {S.DEAD, S.REJECTED} and bool(series and series.state_reason)
    missing_record = len(acked - recorded)
    missing_output = 0 if parked else max(0, len(acked) - delivered)
    return Row(
        fault,
        len(paths),
        len(acked),
        processed,
        delivered,
        missing_record + missing_output,
        max(0, delivered - len(paths)),
        state.value if state else "none",
        round(done_at - fault_at, 1) if state is S.DONE else None,
        receptions,
        runs,
    )


def _state(node: Node, uid: str) -> SeriesState | None:
    try:
        return node.state.get(uid).state
    except Exception:
        return None


Scenario = Callable[[Node, RecordingPacs, list[Path], str, set[str]], float]


def baseline(
    node: Node, pacs: RecordingPacs, paths: list[Path], uid: str, acked: set[str]
) -> float:
    now = time.time()
    send(node.port, paths, acked)
    return now


def parallel(
    node: Node, pacs: RecordingPacs, paths: list[Path], uid: str, acked: set[str]
) -> float:
    now = time.time()
    threads = [
        threading.Thread(target=send, args=(node.port, paths[i::3], acked)) for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    # A modality re-sends what was not acknowledged (none, unless an association failed).
    send(node.port, [p for p in paths if str(dcmread(p).SOPInstanceUID) not in acked], acked)
    return now


def duplicate(
    node: Node, pacs: RecordingPacs, paths: list[Path], uid: str, acked: set[str]
) -> float:
    now = time.time()
    send(node.port, paths, acked)
    send(node.port, paths, acked)
    return now


def late(node: Node, pacs: RecordingPacs, paths: list[Path], uid: str, acked: set[str]) -> float:
    for path in paths:  # a scanner that does not say how many slices to expect
        ds = dcmread(path)
        del ds.NumberOfSlices
        ds.save_as(path)
    early = len(paths) // 2
    send(node.port, paths[:early], acked)
    wait_until(lambda: _state(node, uid) is S.DONE, 120, 0.2)
    now = time.time()
    send(node.port, paths[early:], acked)
    wait_until(lambda: _state(node, uid) is not S.DONE, 30, 0.1)
    return now


def kill_worker(
    node: Node, pacs: RecordingPacs, paths: list[Path], uid: str, acked: set[str]
) -> float:
    send(node.port, paths, acked)
    wait_until(lambda: _state(node, uid) in {S.PROCESSING, *FINAL}, 120, 0.01)
    now = time.time()
    node.kill(node.worker)
    node.worker = node.start_worker()
    return now


def kill_worker_child(
    node: Node, pacs: RecordingPacs, paths: list[Path], uid: str, acked: set[str]
) -> float:
    """kill -9 of the pool process running the job; the Celery parent stays up.

    With ``acks_late`` and ``reject_on_worker_lost`` the parent puts the message back and a
    new pool process gets it at once, but the dead one's lease is still live, so that run
    finds nothing to do; once the lease (no longer renewed by the dead heartbeat) runs out,
    the dispatcher queues the series again and it is denoised and delivered once.
    """
    children = node.pool_children()
    send(node.port, paths, acked)
    wait_until(lambda: _state(node, uid) in {S.PROCESSING, *FINAL}, 120, 0.005)
    now = time.time()
    for pid in children:  # worker_concurrency 1: the one pool process, busy with our job
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    mid_job = _state(node, uid) is S.PROCESSING
    print(f"worker child {children} killed {'mid-job' if mid_job else 'AFTER the job'}")
    return now


def kill_listener(
    node: Node, pacs: RecordingPacs, paths: list[Path], uid: str, acked: set[str]
) -> float:
    sender = threading.Thread(target=send, args=(node.port, paths, acked))
    sender.start()
    wait_until(lambda: len(acked) >= len(paths) // 3, 60, 0.01)
    now = time.time()
    node.kill(node.listener)
    sender.join(timeout=60)
    node.listener = node.start_listener()
    send(node.port, [p for p in paths if str(dcmread(p).SOPInstanceUID) not in acked], acked)
    return now


def kill_redis(
    node: Node, pacs: RecordingPacs, paths: list[Path], uid: str, acked: set[str]
) -> float:
    now = time.time()
    node.redis.kill()
    node.redis.wait(timeout=10)
    send(node.port, paths, acked)
    time.sleep(3.0)  # the dispatcher fails to publish meanwhile, and keeps the series
    node.redis = node.start_redis()
    return now


def pacs_down(
    node: Node, pacs: RecordingPacs, paths: list[Path], uid: str, acked: set[str]
) -> float:
    pacs.stop()
    send(node.port, paths, acked)
    wait_until(
        lambda: "send" in (node.state.get(uid).last_error if _state(node, uid) else ""), 120, 0.2
    )
    now = time.time()
    pacs.start()
    return now


def pacs_rejecting(
    node: Node, pacs: RecordingPacs, paths: list[Path], uid: str, acked: set[str]
) -> float:
    pacs.stop()
    pacs.start(reject_us=True)
    now = time.time()
    send(node.port, paths, acked)
    wait_until(lambda: _state(node, uid) in FINAL, 120, 0.2)
    pacs.stop()
    pacs.start()
    return now


SCENARIOS: dict[str, Scenario] = {
    "none (baseline)": baseline,
    "3 parallel associations": parallel,
    "duplicate send": duplicate,
    "late instances after DONE": late,
    "kill -9 worker mid-job": kill_worker,
    "kill -9 worker child": kill_worker_child,
    "kill -9 listener mid-send": kill_listener,
    "kill -9 redis": kill_redis,
    "PACS down, then up": pacs_down,
    "PACS rejecting (permanent)": pacs_rejecting,
}


def watermark(work: Path, template: Path) -> Row:
    """Disk above the watermark: every instance refused with 0xA700, none acknowledged."""
    settings = load_settings(
        listener={"bind_address": "127.0.0.1", "port": free_port()},
        spool={"path": str(work / "full-spool"), "min_free_bytes": 2**62},
    )
    from service.pipeline.listener import start_listener
    from service.pipeline.spool import Spool

    state = StateStore(settings.database_url)
    server = start_listener(settings, Spool(settings.spool.path), state)
    paths, _uid = fresh_series(template, work / "full-series")
    acked: set[str] = set()
    try:
        send(settings.listener.port, paths, acked)
    finally:
        server.shutdown()
        state.close()
    return Row(
        "disk above watermark", len(paths), len(acked), 0, 0, len(acked), 0, "refused 0xA700", None
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small", "full"], default="tiny")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    study = simulate_study(seed=7, drfs=[20.0], size=args.size)
    template = Path(write_simulated_study(study, work / "study")["drf20"][0]).parent
    pacs = RecordingPacs(free_port())
    pacs.start()
    node = Node(work, pacs.port)
    rows: list[Row] = []
    try:
        for index, (fault, scenario) in enumerate(SCENARIOS.items()):
            paths, uid = fresh_series(template, work / f"series{index}")
            acked: set[str] = set()
            fault_at = scenario(node, pacs, paths, uid, acked)
            rows.append(measure(fault, node, pacs, paths, uid, acked, fault_at, 180))
            print(rows[-1], flush=True)
        rows.append(watermark(work, template))
    finally:
        node.stop()
        pacs.stop()
    header = (
        f"{'fault':<28}{'sent':>6}{'acked':>7}{'proc':>6}{'deliv':>7}{'recv':>6}{'lost':>6}"
        f"{'dup':>5}{'runs':>6}  {'state':<15}{'recover s':>10}"
    )
    print(f"\nseries of {len(list(template.glob('*.dcm')))} instances ({args.size})")
    print(header)
    for r in rows:
        recover = "-" if r.recover_s is None else f"{r.recover_s:.1f}"
        print(
            f"{r.fault:<28}{r.sent:>6}{r.acked:>7}{r.processed:>6}{r.delivered:>7}"
            f"{r.received:>6}{r.lost:>6}{r.duplicated:>5}{r.runs:>6}  {r.state:<15}{recover:>10}"
        )
    bad = [r for r in rows if r.lost or r.duplicated]
    print(f"lost: {sum(r.lost for r in rows)}, duplicated: {sum(r.duplicated for r in rows)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
