"""Static checks of the Dockerfiles, Prometheus config, alert rules and Grafana provisioning."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILES = [DEPLOY / "Dockerfile", DEPLOY / "Dockerfile.gpu"]
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "unipet-node.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)
_UNIPET_NAME = re.compile(r"\bunipet_[a-z0-9_]+\b")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _build_args(steps: list[tuple[str, str]]) -> dict[str, str]:
    """Defaults of the ``ARG NAME=value`` lines."""
    return dict(a.partition("=")[::2] for k, a in steps if k == "ARG" and "=" in a)


def _final_base(path: Path) -> str:
    """The image the last stage starts from, build arguments resolved to their defaults."""
    steps = _instructions(path)
    base = [args for keyword, args in steps if keyword == "FROM"][-1].split()[0]
    for name, value in _build_args(steps).items():
        base = base.replace(f"${{{name}}}", value)
    return base


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_pins_its_base_and_runs_unprivileged(path: Path) -> None:
    steps = _instructions(path)
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert froms[0].startswith("${BASE_IMAGE}") and froms[-1] == "${BASE_IMAGE}"
    _image, _, tag = _final_base(path).partition(":")
    assert tag and tag != "latest"
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    assert ("ENTRYPOINT", '["unipet-node"]') in steps
    assert any("torch==2.13.*" in args for keyword, args in steps if keyword == "RUN")


def test_cpu_image_uses_a_cpu_wheel_and_gpu_image_a_cuda_base() -> None:
    assert _final_base(DOCKERFILES[0]) == "python:3.11-slim-bookworm"
    cpu_steps = _instructions(DOCKERFILES[0])
    assert _build_args(cpu_steps)["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    cpu_runs = " ".join(a for k, a in cpu_steps if k == "RUN")
    assert '--index-url "$TORCH_INDEX_URL"' in cpu_runs
    assert "--no-index --find-links /tmp/wheels" in cpu_runs
    assert _final_base(DOCKERFILES[1]).startswith("nvidia/cuda:")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_build_inputs_stay_in_the_build_stage(path: Path) -> None:
    """CA certificates and wheels are copied before the last FROM; the final stage copies the
    virtual environment only, so neither reaches the image."""
    steps = _instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    final_copies = [args for keyword, args in steps[last_from:] if keyword == "COPY"]
    assert final_copies == ["--from=build /opt/venv /opt/venv"]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_path_exists_and_passes_the_dockerignore(path: Path) -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = [
        args.split()[:-1]
        for keyword, args in _instructions(path)
        if keyword == "COPY" and not args.startswith("--from=")
    ]
    sources = [source.rstrip("/") for group in copied for source in group]
    assert {"pyproject.toml", "service", "model", "deploy/ca-certificates"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert source in allowed, f"{source} is excluded by .dockerignore"
    assert (ROOT / "model" / "weights").is_dir()


def _rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def _dashboard_expressions() -> list[str]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_rules_have_the_required_alerts_and_fields() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    names = {rule["alert"] for rule in rules}
    assert {
        "UnipetDeadLetters",
        "UnipetDestinationFailing",
        "UnipetSpoolAboveWatermark",
        "UnipetSpoolLowFreeSpace",
        "UnipetNoWorkerHeartbeat",
    } <= names
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


@pytest.mark.parametrize(
    "expressions", [_rule_expressions, _dashboard_expressions], ids=["alerts", "dashboard"]
)
def test_queries_use_only_metrics_the_node_defines(expressions: Any) -> None:
    used = {name for expr in expressions() for name in _UNIPET_NAME.findall(expr)}
    assert used, "no unipet_ metric referenced"
    assert used <= METRIC_NAMES, sorted(used - METRIC_NAMES)


def test_dashboard_covers_the_operations_questions() -> None:
    text = " ".join(_dashboard_expressions())
    for needle in (
        "rate(unipet_instances_received_total",
        "unipet_jobs_queued",
        "histogram_quantile(0.5, sum by (le, device) (rate(unipet_inference_seconds_bucket",
        "histogram_quantile(0.95, sum by (le, device) (rate(unipet_inference_seconds_bucket",
        "unipet_end_to_end_seconds_bucket",
        'outcome="failure"',
        "unipet_dead_letter_series",
        "unipet_spool_free_bytes",
    ):
        assert needle in text, needle
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_grafana_provisioning_points_at_the_dashboard_and_datasource() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    datasource = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    assert {p["datasource"]["uid"] for p in dashboard["panels"]} == {uid}
    provider = yaml.safe_load((provisioning / "dashboards" / "unipet.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


@needs_promtool
@pytest.mark.parametrize(
    "args",
    [
        ["check", "rules", "alerts.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "alerts.test.yml"],
    ],
    ids=["check-rules", "check-config", "test-rules"],
)
def test_promtool_accepts_the_prometheus_files(args: list[str]) -> None:
    result = subprocess.run(
        [str(PROMTOOL), *args],
        cwd=DEPLOY / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
