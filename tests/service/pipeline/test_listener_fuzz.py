"""Fuzz the real C-STORE path with generated bad instances (Hypothesis).

CI runs ``UNIPET_FUZZ_EXAMPLES`` (default 100) examples; ``benchmarks/bench_fuzz.py`` runs
1,000 and more with a table of outcomes.
"""

from __future__ import annotations

import os
from pathlib import Path

from fuzz_samples import base_instance, run_fuzz
from support import free_port

from service.config import load_settings
from service.pipeline.listener import start_listener
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore


def test_bad_instances_get_a_status_and_a_reason_and_never_stop_the_node(
    tmp_path: Path, study_copy: Path
) -> None:
    settings = load_settings(
        listener={"bind_address": "127.0.0.1", "port": free_port()},
        spool={"path": str(tmp_path / "spool"), "min_free_bytes": 0, "max_used_fraction": 1.0},
    )
    spool = Spool(settings.spool.path)
    state = StateStore(settings.database_url)
    server = start_listener(settings, spool, state)
    try:
        report = run_fuzz(
            settings.listener.port,
            spool.root,
            lambda sop: state.instance_sha256(sop) is not None,
            base_instance(sorted((study_copy / "drf20").glob("*.dcm"))[0]),
            int(os.environ.get("UNIPET_FUZZ_EXAMPLES", "100")),
        )
    finally:
        server.shutdown()
        state.close()
    assert report.problems == []
    assert report.examples >= 50
    refused = sum(n for (_kind, status), n in report.counts.items() if status != "0x0000")
    assert refused > report.examples // 2  # most damage must be caught at the door
