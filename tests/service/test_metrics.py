"""Metric names, label hygiene and multiprocess exposition through the real web server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from service import metrics

#: The metric names and labels dashboards and alerts depend on (docs/deployment.md, "Metrics").
PUBLISHED_METRICS = {
    "unipet_instances_received_total": {"calling_aet"},
    "unipet_instances_rejected_total": {"reason"},
    "unipet_series_completed_total": {"reason"},
    "unipet_series_completion_wait_seconds": set(),
    "unipet_jobs_queued": set(),
    "unipet_inference_seconds": {"device"},
    "unipet_denoise_stage_seconds": {"stage"},
    "unipet_series_processed_total": {"outcome"},
    "unipet_send_attempts_total": {"destination", "outcome"},
    "unipet_dead_letter_series": set(),
    "unipet_spool_free_bytes": set(),
    "unipet_associations_rejected_total": {"reason"},
    "unipet_end_to_end_seconds": set(),
}
#: Label names that can only hold configuration or closed sets, never patient data.
ALLOWED_LABELS = {"calling_aet", "reason", "device", "outcome", "destination", "check", "stage"}


def _families() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if hasattr(value, "_labelnames") and hasattr(value, "describe"):
            name = value.describe()[0].name
            suffix = "_total" if value._type == "counter" else ""
            found[name + suffix] = set(value._labelnames)
    return found


def test_every_design_metric_exists_with_its_labels() -> None:
    families = _families()
    for name, labels in PUBLISHED_METRICS.items():
        assert families.get(name) == labels, name
        assert name in metrics.METRIC_NAMES or f"{name}_count" in metrics.METRIC_NAMES


def test_labels_never_carry_patient_data() -> None:
    for name, labels in _families().items():
        assert name.startswith("unipet_")
        assert labels <= ALLOWED_LABELS, f"{name} has labels {labels - ALLOWED_LABELS}"


_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, sys, urllib.request
    from service import metrics
    from service.config import load_settings
    from service.ops.web import start_web

    def child(aet: str, free: int) -> None:
        # a prefork worker child: increments after fork, then exits (recycled)
        metrics.instances_received_total.labels(calling_aet=aet).inc(3)
        metrics.inference_seconds.labels(device="cpu").observe(2.5)
        metrics.spool_free_bytes.set(free)

    metrics.instances_received_total.labels(calling_aet="SCANNER1").inc()
    ctx = multiprocessing.get_context("fork")
    for aet, free in (("SCANNER1", 111), ("SCANNER2", 222)):
        process = ctx.Process(target=child, args=(aet, free))
        process.start()
        process.join(30)
    settings = load_settings(
        spool={"path": sys.argv[1] + "/spool", "min_free_bytes": 0},
        queue={"broker_url": "redis://127.0.0.1:1/0", "embedded_redis": False},
        web={"bind_address": "127.0.0.1", "port": 0},
        listener={"allowed_calling_aets": ["SCANNER1"]},
    )
    server = start_web(settings)
    try:
        with urllib.request.urlopen(server.url + "/metrics", timeout=15) as response:
            body = response.read().decode()
            content_type = response.headers["Content-Type"]
    finally:
        server.stop()
    sys.stdout.write(json.dumps({"body": body, "content_type": content_type}))
    """
)


def test_multiprocess_mode_sums_forked_children_and_survives_their_exit(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    reply = json.loads(result.stdout)
    assert reply["content_type"].startswith("text/plain; version=")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(reply["body"])
        for sample in family.samples
    }
    received = "unipet_instances_received_total"
    assert samples[(received, (("calling_aet", "SCANNER1"),))] == 4.0
    assert samples[(received, (("calling_aet", "SCANNER2"),))] == 3.0
    assert samples[("unipet_inference_seconds_count", (("device", "cpu"),))] == 2.0
    # mostrecent gauges: one value, no pid label; the web process wrote the real free space last.
    free = [v for (name, labels), v in samples.items() if name == "unipet_spool_free_bytes"]
    assert len(free) == 1
    assert free[0] > 222
    assert samples[("unipet_health_check_ok", (("check", "broker"),))] == 0.0
    files = sorted(path.name for path in metrics_dir.iterdir())
    assert len({name.rsplit("_", 1)[1] for name in files}) >= 3  # parent + two children
    assert all(name.count("_") <= 2 and "-" in name.rsplit("_", 1)[1] for name in files)
