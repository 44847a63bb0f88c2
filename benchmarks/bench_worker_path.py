"""The worker's whole path for one series: spool -> volume -> denoiser -> derived series.

    python benchmarks/bench_worker_path.py --size tiny                       # CI: seconds
    python benchmarks/bench_worker_path.py --size full --slices 400          # CPU worker
    python benchmarks/bench_worker_path.py --size full --slices 400 --device cuda

A simulated DRF 20 series (lengthened to ``--slices``, 400 x 192 x 192 at ``full``) is sent
by dcmtk ``storescu`` to the node's listener, declared complete by the completeness
watcher and queued by the dispatcher, exactly as in production. Then the worker's own
denoise job (``service.pipeline.jobs.denoise``, what a Celery worker of that queue runs,
with ``model.device`` as ``--device``) turns it into the written derived series: reading and
decoding every instance, inference, the quality report, writing and fsyncing the series.

Each backend gets ``--repeats`` fresh copies of the series in one worker context: the first
job also loads the weights (and starts CUDA), the rest are warm, as in a running worker.
Printed per backend: cold seconds, the median warm seconds, and of those the inference
seconds the job recorded and the rest; then the job's own stages (read, inference, write,
report) as it records them in ``unipet_denoise_stage_seconds``. The peer measured in the same
run is the Gaussian post-filter backend through the same job: the node's floor for everything
but the network.
UniPET's target for the GPU worker is a warm whole series in under 5 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_load import copies
from prometheus_client import REGISTRY
from pydicom import dcmread

from service.config import NodeSettings, PeerSettings, load_settings
from service.dicom.sender import send_files
from service.dicom.synthetic import write_simulated_study
from service.errors import NodeError
from service.ops.dcmtk import dcmtk_binary, storescu
from service.ops.demo import free_port
from service.pipeline import jobs
from service.pipeline.completeness import CompletenessWatcher
from service.pipeline.dispatch import Dispatcher
from service.pipeline.inference import simulate_study
from service.pipeline.jobs import DENOISE_STAGES
from service.pipeline.listener import start_listener
from service.pipeline.spool import Spool
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore
from service.pipeline.worker_context import WorkerContext

GPU_TARGET_S = 5.0


@dataclass(frozen=True)
class JobTiming:
    """One denoise job: its whole wall time, the inference part it recorded and its stages."""

    seconds: float
    inference_seconds: float
    stages: dict[str, float]


def stage_sums() -> dict[str, float]:
    """The sums of ``unipet_denoise_stage_seconds`` so far, by stage (this process)."""
    sums = {}
    for stage in DENOISE_STAGES:
        value = REGISTRY.get_sample_value("unipet_denoise_stage_seconds_sum", {"stage": stage})
        sums[stage] = value or 0.0
    return sums


def receive(settings: NodeSettings, spool: Spool, state: StateStore, folder: Path) -> str:
    """Send ``folder`` to a listener and let completeness and dispatch queue it; its UID."""
    server = start_listener(settings, spool, state)
    try:
        send(settings, folder)
    finally:
        server.shutdown()
    uid = str(dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).SeriesInstanceUID)
    quiet_s = settings.quiet_period_for("BENCH")
    CompletenessWatcher(settings, state).run_once(time.time() + quiet_s + 1.0)
    Dispatcher(settings, state, lambda _uid: None, lambda _uid: None).run_once(time.time())
    if state.get(uid).state != SeriesState.QUEUED:
        raise RuntimeError(f"series {uid} is {state.get(uid).state.value}, not QUEUED")
    return uid


def send(settings: NodeSettings, folder: Path) -> None:
    """C-STORE ``folder`` to the node's listener as AE BENCH: with dcmtk's storescu, the
    usual peer, or with the node's own sender where dcmtk is not installed (a GPU host
    image often has no dcmtk; the job timed afterwards is the same)."""
    try:
        dcmtk_binary("storescu")
    except NodeError:
        peer = PeerSettings(
            ae_title=settings.listener.ae_title, host="127.0.0.1", port=settings.listener.port
        )
        sender = settings.sender.model_copy(update={"ae_title": "BENCH"})
        send_files(sorted(folder.glob("*.dcm")), peer, sender)
        return
    storescu(folder, settings.listener.port, settings.listener.ae_title, "BENCH")


def run_backend(
    backend: str, device: str, threads: int, folders: list[Path], work: Path
) -> list[JobTiming]:
    """Receive each folder into one node and time the worker's denoise job on each."""
    settings = load_settings(
        listener={"bind_address": "127.0.0.1", "port": free_port()},
        spool={"path": str(work / f"node-{backend}"), "min_free_bytes": 0},
        model={"backend": backend, "device": device, "threads": threads},
    )
    spool, state = Spool(settings.spool.path), StateStore(settings.database_url)
    ctx = WorkerContext(settings, spool, state)
    timings = []
    for folder in folders:
        uid = receive(settings, spool, state, folder)
        before, started = stage_sums(), time.perf_counter()
        outcome = jobs.denoise(ctx, uid)
        seconds = time.perf_counter() - started
        stages = {stage: value - before[stage] for stage, value in stage_sums().items()}
        series = state.get(uid)
        if not outcome.done or series.state != SeriesState.WRITTEN:
            raise RuntimeError(f"{backend}: series is {series.state.value}: {outcome.detail}")
        timings.append(JobTiming(seconds, series.inference_seconds or 0.0, stages))
    return timings


def report(backend: str, timings: list[JobTiming]) -> float:
    """Print cold and warm figures of one backend; returns the median warm seconds."""
    cold, warm = timings[0], timings[1:] or timings
    whole = statistics.median(t.seconds for t in warm)
    inference = statistics.median(t.inference_seconds for t in warm)
    print(
        f"{backend:8s} cold {cold.seconds:6.2f} s | warm {whole:6.2f} s "
        f"= inference {inference:6.2f} s + rest {whole - inference:5.2f} s ({len(warm)} warm)"
    )
    split = ", ".join(
        f"{stage} {statistics.median(t.stages[stage] for t in warm):.2f} s"
        for stage in DENOISE_STAGES
    )
    print(f"{'':8s} stages (median warm): {split}")
    return whole


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small", "full"], default="tiny")
    parser.add_argument("--slices", type=int, default=None, help="slices of the series")
    parser.add_argument("--device", default="cpu", help="model.device: cpu, cuda, cuda:1 ...")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of the model")
    parser.add_argument("--repeats", type=int, default=3, help="series per backend (>= 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        return run(args, Path(tmp))


def run(args: argparse.Namespace, work: Path) -> int:
    """Simulate, copy and time both backends inside ``work``."""
    study = simulate_study(seed=5, drfs=[20.0], size=args.size)
    template = Path(write_simulated_study(study, work / "study")["drf20"][0]).parent
    folders = copies(template, work / "send", args.slices, count_folders=2 * args.repeats)
    count = len(list(folders[0].glob("*.dcm")))
    print(f"series: {count} slices ({args.size}), device {args.device}, threads {args.threads}")
    unipet = report("unipet", run_backend("unipet", args.device, args.threads, folders[::2], work))
    peer = run_backend("gaussian", "cpu", args.threads, folders[1::2], work)
    gaussian = report("gaussian", peer)
    print(f"ratio unipet / gaussian whole job: {unipet / gaussian:.2f}")
    if args.device.startswith("cuda"):
        verdict = "PASS" if unipet < GPU_TARGET_S else "MISS"
        print(f"target: warm GPU series < {GPU_TARGET_S:g} s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
