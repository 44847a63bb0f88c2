"""Configuration: YAML file, env overrides, and errors that name the key."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from support import wait_for

from service.config import load_settings, redis_client_url
from service.errors import ConfigError


def test_defaults_follow_the_documented_interface() -> None:
    settings = load_settings()
    assert settings.listener.ae_title == "UNIPET"
    assert settings.listener.port == 11112
    assert settings.web.port == 8080
    assert settings.completeness.quiet_period_s == 30
    assert settings.model.device == "auto"
    assert settings.destinations == []


def test_yaml_file_then_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "node.yaml"
    config.write_text(
        "listener:\n  ae_title: PETNODE\n  port: 4242\n  allowed_calling_aets: [SCANNER1]\n"
        "destinations:\n  - {name: pacs, ae_title: PACS, host: 10.0.0.5, port: 104}\n"
        "completeness:\n  quiet_period_s: 45\n  quiet_period_s_by_aet: {SLOWSCANNER: 120}\n"
    )
    monkeypatch.setenv("UNIPET_LISTENER__PORT", "5555")
    settings = load_settings(config)
    assert settings.listener.ae_title == "PETNODE"
    assert settings.listener.port == 5555  # env beats file
    assert settings.destinations[0].host == "10.0.0.5"
    assert settings.quiet_period_for("SLOWSCANNER") == 120
    assert settings.quiet_period_for("OTHER") == 45


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("listener:\n  port: 70000\n", "listener.port"),
        ("listener:\n  ae_title: THIS_AE_TITLE_IS_TOO_LONG\n", "listener"),
        ("spool:\n  max_used_fraction: 1.5\n", "spool.max_used_fraction"),
        (
            "destinations:\n  - {name: 'bad name', ae_title: X, host: h, port: 1}\n",
            "destinations.0.name",
        ),
        ("listner:\n  port: 1\n", "listner"),
        ("model:\n  backend: magic\n", "model.backend"),
    ],
)
def test_invalid_values_name_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(config)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.yaml")


def test_default_database_lives_in_the_spool(tmp_path: Path) -> None:
    settings = load_settings(spool={"path": str(tmp_path / "s")})
    assert settings.database_url == f"sqlite:///{(tmp_path / 's' / 'state.db').resolve()}"
    explicit = load_settings(state={"database_url": "postgresql://db/unipet"})
    assert explicit.database_url == "postgresql://db/unipet"


def test_celery_socket_url_reaches_a_real_redis_through_redis_py(tmp_path: Path) -> None:
    """The embedded broker's kombu URL (``virtual_host``) must work for the health probe."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server (apt-get install redis-server)")
    sock = tmp_path / "redis.sock"
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        assert wait_for(sock.exists, 10)
        client = redis.Redis.from_url(redis_client_url(f"redis+socket://{sock}?virtual_host=3"))
        try:
            assert client.ping() is True
            assert client.connection_pool.connection_kwargs["db"] == 3
        finally:
            client.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
