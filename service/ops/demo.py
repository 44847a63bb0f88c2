"""``unipet-node demo``: the whole path on one machine, with real peers.

Starts a demo PACS (dcmtk ``storescp``), the node with its embedded defaults (own Redis,
listener, dispatcher, one Celery worker, status page), simulates a low-dose PET study, sends
it with dcmtk ``storescu`` like a scanner would, waits for the derived series to arrive at
the PACS and prints what came back.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import UID
from rich.console import Console
from rich.table import Table

from service.config import NodeSettings, load_settings
from service.dicom.synthetic import write_simulated_study
from service.errors import NodeError
from service.ops.dcmtk import DEMO_SYNTAXES, compress_folder, start_storescp, storescu
from service.pipeline.inference import simulate_study
from service.pipeline.spool import Spool
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore
from service.runtime import AllInOneNode, stop_process, wait_until, worker_log_path

PACS_AE_TITLE = "DEMOPACS"
SCANNER_AE_TITLE = "DEMOSCANNER"


def free_port() -> int:
    """A free TCP port on loopback (bound then released; fine for a demo and tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class DemoResult:
    """What the demo saw; ``passed`` is False when nothing came back in time."""

    passed: bool
    input_series_uid: str
    output_series_uid: str | None
    instances_sent: int
    instances_at_pacs: int
    timings_s: dict[str, float]
    workdir: Path


def node_log_path(workdir: Path) -> Path:
    """Where the demo's node process writes its log events (the worker: ``worker_log_path``)."""
    return workdir / "logs" / "node.log"


def demo_settings(workdir: Path, pacs_port: int) -> NodeSettings:
    """Embedded defaults on free loopback ports, sending to the demo PACS."""
    return load_settings(
        listener={"bind_address": "127.0.0.1", "port": free_port()},
        destinations=[
            {"name": "demo-pacs", "ae_title": PACS_AE_TITLE, "host": "127.0.0.1", "port": pacs_port}
        ],
        spool={"path": str(workdir / "spool"), "min_free_bytes": 100 * 1024**2},
        queue={"broker_url": f"redis://127.0.0.1:{free_port()}/0", "retry_backoff_s": 2.0},
        completeness={"quiet_period_s": 5.0, "poll_interval_s": 0.5},
        web={"bind_address": "127.0.0.1", "port": free_port()},
    )


def start_demo_pacs(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """dcmtk storescp as the demo PACS, one file per instance under ``folder``."""
    return start_storescp(folder, port, PACS_AE_TITLE)


def store_with_storescu(folder: Path, settings: NodeSettings, propose: str | None = None) -> None:
    """Send a folder to the node like a scanner does (dcmtk storescu, one association)."""
    result = storescu(
        folder,
        settings.listener.port,
        settings.listener.ae_title,
        SCANNER_AE_TITLE,
        propose=propose,
    )
    if result.returncode != 0:
        raise NodeError(f"storescu failed ({result.returncode}): {result.stderr.strip()[-500:]}")


def count_at_pacs(folder: Path) -> Counter[str]:
    """Instances per SeriesInstanceUID stored at the demo PACS."""
    counts: Counter[str] = Counter()
    for path in folder.rglob("*.dcm"):
        counts[str(dcmread(path, stop_before_pixels=True).SeriesInstanceUID)] += 1
    return counts


def scrape_metrics(port: int, target: Path) -> None:
    """Save what Prometheus would scrape from the node's /metrics right now."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        target.write_bytes(response.read())


def run_demo(
    size: str,
    drf: float,
    workdir: Path | None,
    timeout_s: float,
    console: Console,
    hold: Callable[[], None] | None = None,
    transfer_syntax: str = "uncompressed",
) -> DemoResult:
    """Run the demo end to end and print a summary table.

    ``transfer_syntax`` other than "uncompressed" (a key of ``DEMO_SYNTAXES``) compresses the
    sent series first, as an archive that compresses on ingest would forward it.
    """
    syntax = DEMO_SYNTAXES.get(transfer_syntax)
    if syntax is None and transfer_syntax != "uncompressed":
        raise NodeError(
            f"unknown transfer syntax {transfer_syntax!r}; choose uncompressed or "
            + ", ".join(DEMO_SYNTAXES)
        )
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="unipet-demo-"))).resolve()
    timings: dict[str, float] = {}
    pacs_port = free_port()
    pacs = start_demo_pacs(workdir / "pacs", pacs_port)
    settings = demo_settings(workdir, pacs_port)
    node = AllInOneNode(settings)
    web = None
    try:
        started = time.perf_counter()
        node.start()
        from service.ops.web import start_web

        web = start_web(settings)
        timings["node start"] = time.perf_counter() - started
        started = time.perf_counter()
        with console.status(f"simulating a {size} FDG study at full dose and DRF {drf:g} ..."):
            study = simulate_study(seed=7, drfs=[drf], size=size)  # type: ignore[arg-type]
            written = write_simulated_study(study, workdir / "study")
        timings["simulate"] = time.perf_counter() - started
        low_dose_name = next(name for name in written if name != "full")
        sent_paths = written[low_dose_name]
        input_uid = str(dcmread(sent_paths[0], stop_before_pixels=True).SeriesInstanceUID)
        if syntax is not None:
            started = time.perf_counter()
            with console.status(f"compressing the sent series as {transfer_syntax} ..."):
                compress_folder(workdir / "study" / low_dose_name, syntax)
            timings[f"compress ({transfer_syntax})"] = time.perf_counter() - started
        started = time.perf_counter()
        with console.status(f"sending {len(sent_paths)} instances with dcmtk storescu ..."):
            store_with_storescu(
                workdir / "study" / low_dose_name,
                settings,
                propose=syntax.propose if syntax is not None else None,
            )
        timings["send (storescu)"] = time.perf_counter() - started
        sent_at = time.perf_counter()
        state = StateStore(settings.database_url)

        def finished() -> bool:
            try:
                return state.get(input_uid).state in {SeriesState.DONE, SeriesState.DEAD}
            except NodeError:
                return False

        with console.status("waiting for the derived series at the demo PACS ..."):
            wait_until(finished, timeout_s, interval_s=0.25)
        timings["sent -> stored at PACS"] = time.perf_counter() - sent_at
        series = state.get(input_uid)
        if web is not None:
            scrape_metrics(web.port, workdir / "metrics-scrape.txt")
        at_pacs = count_at_pacs(workdir / "pacs")
        output_uid = series.output_series_uid
        instances_back = at_pacs.get(output_uid or "", 0)
        if series.inference_seconds is not None:
            timings["inference"] = series.inference_seconds
        if series.done_at and series.completed_at:
            timings["complete -> done"] = series.done_at - series.completed_at
        result = DemoResult(
            passed=series.state is SeriesState.DONE and instances_back == len(sent_paths),
            input_series_uid=input_uid,
            output_series_uid=output_uid,
            instances_sent=len(sent_paths),
            instances_at_pacs=instances_back,
            timings_s=timings,
            workdir=workdir,
        )
        _print_result(
            console,
            result,
            series.state.value,
            series.algorithm,
            series.completeness_reason,
            settings,
            drf_line(drf, series.drf_estimate),
        )
        console.print(_syntax_line(state, input_uid, settings, workdir / "pacs", output_uid))
        if hold is not None:
            console.print(
                f"status page: http://127.0.0.1:{settings.web.port}/ (also /metrics, /healthz); "
                "node, demo PACS and status page keep running: Ctrl-C stops them"
            )
            hold()
        return result
    finally:
        if web is not None:
            web.stop()
        node.stop()
        stop_process(pacs)


def _syntax_line(
    state: StateStore, input_uid: str, settings: NodeSettings, pacs: Path, output_uid: str | None
) -> str:
    """Transfer syntax as spooled by the listener and as stored at the PACS."""
    instances = state.instances(input_uid)
    if not instances:
        return "transfer syntax: nothing received"
    spooled = dcmread(
        Spool(settings.spool.path).path_of(instances[0].spool_key), stop_before_pixels=True
    )
    received = UID(spooled.file_meta.TransferSyntaxUID).name
    stored = "-"
    for path in sorted(pacs.rglob("*.dcm")):
        header = dcmread(path, stop_before_pixels=True)
        if str(header.SeriesInstanceUID) == output_uid:
            lossy = str(header.get("LossyImageCompression", "00") or "00")
            stored = (
                f"{UID(header.file_meta.TransferSyntaxUID).name}, LossyImageCompression {lossy}"
            )
            break
    return f"transfer syntax received and spooled: {received}; derived at PACS: {stored}"


def drf_line(sent_drf: float, estimate: float | None) -> str:
    """The DRF the demo simulated next to the node's estimate from the images alone."""
    if estimate is None:
        return f"sent {sent_drf:g}; not estimated by this backend"
    return f"sent {sent_drf:g}; estimated by the node from the images: {estimate:.3g}"


def _print_result(
    console: Console,
    result: DemoResult,
    state: str,
    algorithm: str,
    completeness: str,
    settings: NodeSettings,
    drf: str,
) -> None:
    table = Table(title="UniPET node demo", show_header=False)
    table.add_row("result", "[green]PASSED[/green]" if result.passed else f"[red]{state}[/red]")
    table.add_row("input series (sent by storescu)", result.input_series_uid)
    table.add_row("derived series (at demo PACS)", result.output_series_uid or "-")
    table.add_row(
        "instances sent / received back", f"{result.instances_sent} / {result.instances_at_pacs}"
    )
    table.add_row("completeness", completeness)
    table.add_row("algorithm", algorithm)
    table.add_row("dose reduction factor", drf)
    for name, seconds in result.timings_s.items():
        table.add_row(f"time: {name}", f"{seconds:.2f} s")
    table.add_row("demo PACS files", str(result.workdir / "pacs"))
    table.add_row("simulated study", str(result.workdir / "study"))
    table.add_row("node spool and state", str(settings.spool.path))
    table.add_row("metrics scraped from /metrics", str(result.workdir / "metrics-scrape.txt"))
    table.add_row("node log (listener, dispatcher)", str(node_log_path(result.workdir)))
    table.add_row("worker log", str(worker_log_path(settings)))
    console.print(table)
