"""C-STORE ingest: the node's listener against dcmtk storescp, same series, same sender.

    python benchmarks/bench_ingest.py --size tiny     # CI: seconds
    python benchmarks/bench_ingest.py --size full     # ~370 slices of 192x192

A simulated PET series is sent by dcmtk ``storescu`` (one association, Nagle off) first to
dcmtk ``storescp`` writing to disk, then to the node's listener (which also parses the
header, checks admission, fsyncs, renames and records each instance in SQLite). Prints
instances per second for both and their ratio; then the node's whole path (storescu ->
listener -> worker -> derived series stored at storescp) for the same series.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from service.config import load_settings
from service.dicom.synthetic import write_simulated_study
from service.ops.dcmtk import storescu
from service.ops.demo import free_port, start_demo_pacs
from service.pipeline.inference import simulate_study
from service.pipeline.listener import start_listener
from service.pipeline.spool import Spool
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore
from service.runtime import AllInOneNode, stop_process, wait_until


def storescu_seconds(folder: Path, port: int, called_aet: str) -> float:
    """Wall time of one storescu association sending every file of ``folder``."""
    started = time.perf_counter()
    storescu(folder, port, called_aet, "BENCH").check_returncode()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small", "full"], default="small")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    study = simulate_study(seed=5, drfs=[20.0], size=args.size)
    folder = Path(write_simulated_study(study, work / "study")["drf20"][0]).parent
    count = len(list(folder.glob("*.dcm")))
    size_mb = sum(p.stat().st_size for p in folder.glob("*.dcm")) / 1e6
    print(f"series: {count} instances, {size_mb:.1f} MB ({args.size})")

    peer_times, node_times = [], []
    for repeat in range(args.repeats):
        pacs_port = free_port()
        pacs = start_demo_pacs(work / f"storescp{repeat}", pacs_port)
        try:
            peer_times.append(storescu_seconds(folder, pacs_port, "DEMOPACS"))
        finally:
            stop_process(pacs)
        settings = load_settings(
            listener={"bind_address": "127.0.0.1", "port": free_port()},
            spool={"path": str(work / f"node{repeat}"), "min_free_bytes": 0},
        )
        state = StateStore(settings.database_url)
        server = start_listener(settings, Spool(settings.spool.path), state)
        try:
            node_times.append(storescu_seconds(folder, settings.listener.port, "UNIPET"))
        finally:
            server.shutdown()
    peer, node = min(peer_times), min(node_times)
    print(
        f"dcmtk storescp : {count / peer:8.1f} instances/s  ({peer:.2f} s, best of {args.repeats})"
    )
    print(
        f"unipet listener: {count / node:8.1f} instances/s  ({node:.2f} s, best of {args.repeats})"
    )
    print(f"ratio listener/storescp: {peer / node:.2f}")

    pacs_port = free_port()
    pacs = start_demo_pacs(work / "pacs", pacs_port)
    settings = load_settings(
        listener={"bind_address": "127.0.0.1", "port": free_port()},
        destinations=[
            {"name": "pacs", "ae_title": "DEMOPACS", "host": "127.0.0.1", "port": pacs_port}
        ],
        spool={"path": str(work / "e2e"), "min_free_bytes": 0},
        queue={"broker_url": f"redis://127.0.0.1:{free_port()}/0"},
        completeness={"poll_interval_s": 0.2},
    )
    node_process = AllInOneNode(settings)
    try:
        node_process.start()
        state = StateStore(settings.database_url)
        started = time.perf_counter()
        storescu_seconds(folder, settings.listener.port, "UNIPET")
        uid = next(iter(state.recent(1))).series_instance_uid
        wait_until(lambda: state.get(uid).state in {SeriesState.DONE, SeriesState.DEAD}, 600, 0.1)
        series = state.get(uid)
        total = time.perf_counter() - started
        print(
            f"whole path (send + complete + denoise + write + send back): {total:.2f} s, "
            f"state {series.state.value}, inference {series.inference_seconds or 0:.2f} s"
        )
    finally:
        node_process.stop()
        stop_process(pacs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
