"""Fuzz: generated bad instances over the real C-STORE path, with a table of outcomes.

    python benchmarks/bench_fuzz.py --size tiny     # CI: 200 examples
    python benchmarks/bench_fuzz.py --size full     # 1,000 examples (or --examples N)

Each example is one valid simulated PET slice damaged one way (see tests/fuzz_samples.py):
sent by a pynetdicom SCU byte for byte to the node's listener, then C-ECHO. Prints, per kind
of damage, how many got which status; exits non-zero on any crash status, a failure without
a quarantine reason, a Success that was not recorded, or a missed C-ECHO.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# The repository first, then tests/ for the fuzz generators: tests/service/ (a folder without
# __init__.py) must not shadow the service package as a namespace package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz_samples import base_instance, run_fuzz

from service.config import load_settings
from service.dicom.synthetic import write_simulated_study
from service.ops.demo import free_port
from service.pipeline.inference import simulate_study
from service.pipeline.listener import start_listener
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore

EXAMPLES = {"tiny": 200, "small": 500, "full": 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(EXAMPLES), default="small")
    parser.add_argument("--examples", type=int, default=None)
    args = parser.parse_args()
    examples = args.examples or EXAMPLES[args.size]
    work = Path(tempfile.mkdtemp(prefix="bench-fuzz-"))
    study = simulate_study(seed=3, drfs=[20.0], size="tiny")
    base = base_instance(Path(write_simulated_study(study, work / "study")["drf20"][0]))
    settings = load_settings(
        listener={"bind_address": "127.0.0.1", "port": free_port()},
        spool={"path": str(work / "spool"), "min_free_bytes": 0, "max_used_fraction": 1.0},
    )
    spool = Spool(settings.spool.path)
    state = StateStore(settings.database_url)
    server = start_listener(settings, spool, state)
    started = time.perf_counter()
    try:
        report = run_fuzz(
            settings.listener.port,
            spool.root,
            lambda sop: state.instance_sha256(sop) is not None,
            base,
            examples,
        )
    finally:
        server.shutdown()
        state.close()
    seconds = time.perf_counter() - started
    print(f"fuzz: {report.examples} generated bad instances in {seconds:.0f} s")
    print(f"{'damage':<14} {'status':<9} {'count':>6}")
    for (kind, status), count in sorted(report.counts.items()):
        print(f"{kind:<14} {status:<9} {count:>6}")
    quarantined = len(list((spool.root / "quarantine").glob("*.json")))
    print(f"quarantined with a reason: {quarantined}")
    print(
        f"C-ECHO after every instance: {report.examples - report.echo_retried} on the open "
        f"association, {report.echo_retried} only on a new one"
    )
    print(f"problems: {len(report.problems)}")
    for problem in report.problems[:20]:
        print(f"  {problem}")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
