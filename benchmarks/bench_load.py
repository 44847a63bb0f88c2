"""Load: 8 concurrent associations, each one whole series, against dcmtk storescp.

    python benchmarks/bench_load.py --size tiny                 # CI: 8 x 52 slices of 40x40
    python benchmarks/bench_load.py --size full --slices 400    # 8 x 400 slices of 192x192

Eight dcmtk ``storescu`` processes (one association each, one series each, new UIDs per
series) send at once, first to dcmtk ``storescp``, then to the node's listener run as its own
process (``unipet-node listener``: header parse, admission, fsync + rename, one state row,
all before the Success status). Prints instances/s for both, their ratio, the listener's
peak RSS and how many group commits it made, and checks that every instance is accounted
for in the state database (exit 1 if one is missing or a storescu failed). ``--slices``
lengthens (or shortens) each series to that many slices, continuing the slice positions:
the simulated full-size body is 344 slices.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from pydicom import dcmread
from pydicom.uid import generate_uid

from service.config import load_settings
from service.dicom.synthetic import write_simulated_study
from service.ops.dcmtk import dcmtk_binary, dcmtk_env
from service.ops.demo import free_port, start_demo_pacs
from service.pipeline.inference import simulate_study
from service.pipeline.store import StateStore
from service.runtime import stop_process, wait_until

ASSOCIATIONS = 8


def copies(
    template: Path, work: Path, slices: int | None = None, count_folders: int = ASSOCIATIONS
) -> list[Path]:
    """``count_folders`` folders (one per association), each a copy of the series with its
    own UIDs.

    With ``slices``, the template's slices are repeated (or cut) to that many, each repeat
    placed after the last one (z, Instance Number, Number of Slices follow).
    """
    paths = sorted(template.glob("*.dcm"), key=lambda p: int(dcmread(p).InstanceNumber))
    count = slices or len(paths)
    z_mm = [float(dcmread(p).ImagePositionPatient[2]) for p in paths[:2]]
    extent_mm = (z_mm[1] - z_mm[0]) * len(paths)
    folders = []
    for index in range(count_folders):
        folder = work / f"series{index}"
        folder.mkdir(parents=True)
        study, series = generate_uid(), generate_uid()
        for number in range(count):
            ds = dcmread(paths[number % len(paths)])
            shift_mm = extent_mm * (number // len(paths))
            position = [float(v) for v in ds.ImagePositionPatient]
            ds.ImagePositionPatient = [position[0], position[1], position[2] + shift_mm]
            if "SliceLocation" in ds:
                ds.SliceLocation = float(ds.SliceLocation) + shift_mm
            ds.InstanceNumber, ds.NumberOfSlices = number + 1, count
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.save_as(folder / f"{number + 1:04d}.dcm")
        folders.append(folder)
    return folders


def send_all(folders: list[Path], port: int, called: str) -> tuple[float, list[int]]:
    """Wall time of eight storescu processes sending at once, and their exit codes."""
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [
                str(dcmtk_binary("storescu")),
                "-aet",
                f"LOAD{i}",
                "-aec",
                called,
                "+sd",
                "+r",
                "-nh",
                "127.0.0.1",
                str(port),
                str(folder),
            ],
            env=dcmtk_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, folder in enumerate(folders)
    ]
    codes = [process.wait(timeout=3600) for process in processes]
    return time.perf_counter() - started, codes


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a process (its peak resident set), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small", "full"], default="small")
    parser.add_argument("--slices", type=int, default=None, help="slices per series")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    study = simulate_study(seed=9, drfs=[20.0], size=args.size)
    template = Path(write_simulated_study(study, work / "study")["drf20"][0]).parent
    folders = copies(template, work / "send", args.slices)
    total = sum(len(list(f.glob("*.dcm"))) for f in folders)
    print(f"{ASSOCIATIONS} associations x {total // ASSOCIATIONS} instances ({args.size})")

    pacs_port = free_port()
    pacs = start_demo_pacs(work / "storescp", pacs_port)
    try:
        peer_s, peer_codes = send_all(folders, pacs_port, "DEMOPACS")
    finally:
        stop_process(pacs)

    settings = load_settings(
        listener={"bind_address": "127.0.0.1", "port": free_port(), "max_associations_per_aet": 8},
        spool={"path": str(work / "node"), "min_free_bytes": 0, "max_used_fraction": 1.0},
        queue={"broker_url": f"redis+socket://{work}/no-broker.sock", "embedded_redis": False},
        completeness={"quiet_period_s": 3600, "forced_timeout_s": 7200},
    )
    config = work / "node.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    log = (work / "listener.log").open("wb")
    metrics_dir = work / "metrics"  # the listener's metrics, read back after it stops
    metrics_dir.mkdir()
    listener = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "listener", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
    )
    try:
        wait_until(lambda: _port_open(settings.listener.port), 120, 0.2)
        node_s, node_codes = send_all(folders, settings.listener.port, "UNIPET")
        rss = peak_rss_mb(listener.pid)
    finally:
        stop_process(listener)
    state = StateStore(settings.database_url)
    recorded = sum(series.received_instances for series in state.recent(1000))
    spooled = len(list((settings.spool.path / "incoming").rglob("*.dcm")))
    print(f"dcmtk storescp : {total / peer_s:8.1f} instances/s ({peer_s:.2f} s)")
    print(f"unipet listener: {total / node_s:8.1f} instances/s ({node_s:.2f} s)")
    print(f"ratio listener/storescp: {peer_s / node_s:.2f}")
    print(f"listener peak RSS: {rss:.0f} MB")
    print(f"group commits: {_commits(metrics_dir)}")
    print(f"accounted for: {recorded} of {total} in the state database, {spooled} on disk")
    failed = any(peer_codes) or any(node_codes) or recorded != total or spooled != total
    if failed:
        print(f"LOST OR FAILED: storescu exit codes {node_codes}")
    return 1 if failed else 0


def _commits(metrics_dir: Path) -> str:
    """The listener's group commits and the instances they held, from its metric files."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    commits = registry.get_sample_value("unipet_store_batch_instances_count") or 0.0
    instances = registry.get_sample_value("unipet_store_batch_instances_sum") or 0.0
    mean = instances / commits if commits else 0.0
    return f"{commits:.0f} for {instances:.0f} instances ({mean:.1f} per commit)"


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    sys.exit(main())
