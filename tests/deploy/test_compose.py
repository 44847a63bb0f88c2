"""Static checks of docker-compose.yml and its override (no Docker engine needed).

``compose-spec.json`` beside this file is the Compose Specification's JSON schema, copied
unchanged from compose-spec/compose-spec ``schema/compose-spec.json`` at commit 170098b
(Apache-2.0). No PyPI package ships it, and docker compose itself validates against it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import typer.main
import yaml
from support import free_port

from service.cli import app
from service.config import load_settings
from service.ops.web import start_web
from service.pipeline.listener import start_listener
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
MULTIHOST = ROOT / "deploy" / "docker-compose.multihost.yml"
SCHEMA = json.loads((Path(__file__).parent / "compose-spec.json").read_text())
NODE_SERVICES = {"listener", "cpu-worker", "gpu-worker", "web"}
EXPECTED_SERVICES = NODE_SERVICES | {"redis", "prometheus", "grafana", "orthanc"}
_INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?]([^}]*))?\}")


def load_compose(path: Path) -> dict[str, Any]:
    """Parse a compose file; compose's ``!reset``/``!override`` merge tags are read as plain."""
    loaded = yaml.safe_load(re.sub(r"!(reset|override)\b", "", path.read_text()))
    assert isinstance(loaded, dict)
    return loaded


def interpolate(value: str) -> str:
    """Resolve ``${VAR:-default}`` the way compose does when VAR is unset."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE)


def _cli_commands() -> dict[str, Any]:
    """Sub-commands of ``unipet-node`` as the CLI framework registered them."""
    group = typer.main.get_command(app)
    commands: dict[str, Any] = dict(group.commands)  # type: ignore[attr-defined]
    assert {"serve", "listener", "worker", "web"} <= set(commands)
    return commands


@pytest.mark.parametrize("path", [COMPOSE, MULTIHOST], ids=lambda p: p.name)
def test_compose_files_match_the_compose_spec_schema(path: Path) -> None:
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(load_compose(path)))
    assert errors == [], [f"{list(e.path)}: {e.message}" for e in errors]


def test_the_schema_check_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["web"]["comand"] = broken["services"]["web"].pop("command")
    assert not jsonschema.Draft7Validator(SCHEMA).is_valid(broken)


def test_all_services_with_restart_policy_and_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == EXPECTED_SERVICES
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        assert service["healthcheck"]["test"], name


def test_redis_is_persistent_with_append_only_file(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert "redis-data:/data" in redis["volumes"]


def test_node_services_share_spool_metrics_and_config(compose: dict[str, Any]) -> None:
    for name in NODE_SERVICES:
        service = compose["services"][name]
        assert "spool:/var/lib/unipet" in service["volumes"], name
        assert "metrics:/run/unipet-metrics" in service["volumes"], name
        assert "./deploy/node.compose.yaml:/etc/unipet/node.yaml:ro" in service["volumes"], name
        assert service["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/run/unipet-metrics"


def test_gpu_worker_reserves_an_nvidia_gpu_under_its_profile(compose: dict[str, Any]) -> None:
    gpu = compose["services"]["gpu-worker"]
    assert gpu["profiles"] == ["gpu"]
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert gpu["build"]["dockerfile"] == "deploy/Dockerfile.gpu"


@pytest.mark.parametrize("path", [COMPOSE, MULTIHOST], ids=lambda p: p.name)
def test_bind_mounts_and_build_files_exist(path: Path) -> None:
    for name, service in load_compose(path)["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name


def test_node_commands_are_real_cli_subcommands(compose: dict[str, Any]) -> None:
    commands = _cli_commands()
    for name in NODE_SERVICES:
        argv = compose["services"][name]["command"]
        command = commands.get(argv[0])
        assert command is not None, f"{name}: unipet-node has no sub-command {argv[0]!r}"
        options = {opt for param in command.params for opt in param.opts}
        for arg in argv[1:]:
            if arg.startswith("-"):
                assert arg in options, f"{name}: {argv[0]} has no option {arg}"
        config = argv[argv.index("--config") + 1]
        assert config == "/etc/unipet/node.yaml"


def test_node_config_validates_with_each_service_environment(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in NODE_SERVICES:
        environment = compose["services"][name]["environment"]
        with monkeypatch.context() as patch:
            for key, value in environment.items():
                if key.startswith("UNIPET_"):
                    patch.setenv(key, interpolate(str(value)))
            settings = load_settings(ROOT / "deploy" / "node.compose.yaml")
        assert settings.queue.broker_url == "redis://redis:6379/0"
        assert settings.queue.embedded_redis is False
        assert settings.database_url.startswith("sqlite:////var/lib/unipet/")
        assert [d.host for d in settings.destinations] == ["orthanc"]
        if name == "gpu-worker":
            assert settings.model.device == "cuda"
            assert settings.queue.denoise_queue == "gpu"


def test_worker_healthchecks_ping_the_hostname_the_cli_gives_the_worker(
    compose: dict[str, Any],
) -> None:
    for name, queues in (("cpu-worker", "cpu,send"), ("gpu-worker", "gpu")):
        service = compose["services"][name]
        assert service["command"][-1] == queues
        check = service["healthcheck"]["test"][1]
        assert f"-d unipet-{queues.replace(',', '-')}@$${{HOSTNAME}}" in check


def test_published_ports_are_the_documented_ones(compose: dict[str, Any]) -> None:
    published = {
        int(interpolate(port).split(":")[0])
        for s in compose["services"].values()
        for port in s.get("ports", [])
    }
    assert published == {11112, 8080, 9090, 3000, 8042, 4242}
    doc = (ROOT / "docs" / "deployment.md").read_text()
    for port in published:
        assert str(port) in doc


DOCKER_COMPOSE = shutil.which("docker-compose")


@pytest.mark.skipif(
    DOCKER_COMPOSE is None,
    reason="docker-compose not installed (apt-get install docker-compose; scripts/install does)",
)
@pytest.mark.parametrize("profile", [[], ["--profile", "gpu"]], ids=["default", "gpu"])
def test_docker_compose_accepts_the_file(profile: list[str]) -> None:
    """The compose CLI itself parses, interpolates and validates the file (no engine needed)."""
    result = subprocess.run(
        [str(DOCKER_COMPOSE), "-f", str(COMPOSE), *profile, "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert EXPECTED_SERVICES - {"gpu-worker"} <= set(services)
    if profile:
        devices = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia"


def test_node_containers_have_read_only_roots_and_a_tmpfs(compose: dict[str, Any]) -> None:
    for name in NODE_SERVICES | {"redis", "prometheus"}:
        assert compose["services"][name].get("read_only") is True, name
    for name in NODE_SERVICES:
        assert compose["services"][name]["tmpfs"] == ["/tmp"], name


def test_orthanc_routes_pet_series_to_the_node_listener(compose: dict[str, Any]) -> None:
    orthanc = json.loads((ROOT / "deploy" / "orthanc" / "unipet.json").read_text())
    node = load_settings(ROOT / "deploy" / "node.compose.yaml")
    assert orthanc["DicomAet"] in node.listener.allowed_calling_aets
    assert orthanc["DicomModalities"]["unipet"] == [
        node.listener.ae_title,
        "listener",
        node.listener.port,
    ]
    mounted = {v.split(":")[1] for v in compose["services"]["orthanc"]["volumes"] if ":" in v}
    for script in orthanc["LuaScripts"]:
        assert script in mounted
        lua = (ROOT / "deploy" / "orthanc" / Path(script).name).read_text()
        assert "function OnStableSeries" in lua
        assert "'/modalities/' .. NODE .. '/store'" in lua


@pytest.fixture
def live_node(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A real listener and web process on free loopback ports."""
    settings = load_settings(
        listener={
            "bind_address": "127.0.0.1",
            "port": free_port(),
            "allowed_calling_aets": ["UNIPETSCU"],
        },
        spool={"path": str(tmp_path / "spool")},
        queue={"broker_url": f"redis://127.0.0.1:{free_port()}/0", "embedded_redis": False},
        web={"bind_address": "127.0.0.1", "port": 0},
    )
    state = StateStore(settings.database_url)
    listener = start_listener(settings, Spool(settings.spool.path), state)
    web = start_web(settings)
    yield settings.listener.port, web.port
    web.stop()
    listener.shutdown()
    state.close()


def test_listener_and_web_healthcheck_commands_pass_against_real_servers(
    compose: dict[str, Any], live_node: tuple[int, int]
) -> None:
    listener_port, web_port = live_node
    for name, default_port, port in (("listener", 11112, listener_port), ("web", 8080, web_port)):
        test = compose["services"][name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"]
        code = test[3].replace(str(default_port), str(port))
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, timeout=60, check=False
        )
        assert result.returncode == 0, (name, result.stderr[-1000:])
