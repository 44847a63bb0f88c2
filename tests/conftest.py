"""Fixtures shared by the whole suite: real Redis, real dcmtk peers, simulated PET series.

Every server is started on a free loopback port and stopped by its own handle; every wait is
bounded. Tests that need an external program skip with the apt package to install when it is
missing (``.ci/run`` installs all of them, so CI never skips).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from support import DcmtkPacs, free_port, wait_for

from model.simulate import simulate_study
from service.dicom.synthetic import write_simulated_study


def _redis_server(data: Path) -> Iterator[str]:
    """A real redis-server on a free loopback port, stopped when the generator closes."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(data)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)

    def ready() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    try:
        assert wait_for(ready, 15), "redis-server did not start"
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the whole session (each test uses its own queue names)."""
    yield from _redis_server(tmp_path_factory.mktemp("redis"))


@pytest.fixture
def private_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of this test alone, for tests that count the workers on their broker
    (a worker ping reaches every worker of a broker, whatever its queues)."""
    yield from _redis_server(tmp_path_factory.mktemp("private-redis"))


@pytest.fixture(scope="session")
def tiny_study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated study (full dose, DRF 20 and 50) as DICOM, made once per session."""
    out = tmp_path_factory.mktemp("study")
    study = simulate_study(seed=11, drfs=[20.0, 50.0], size="tiny")
    write_simulated_study(study, out)
    return out


@pytest.fixture
def study_copy(tiny_study_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session study (tests may not alter shared inputs)."""
    target = tmp_path / "study"
    shutil.copytree(tiny_study_dir, target)
    return target


def _require_dcmtk() -> None:
    from service.errors import NodeError
    from service.ops.dcmtk import dcmtk_binary

    try:
        dcmtk_binary("storescp")
    except NodeError:
        pytest.skip("dcmtk not installed (apt-get install dcmtk)")


@pytest.fixture
def pacs(tmp_path: Path) -> Iterator[DcmtkPacs]:
    """A fresh dcmtk storescp PACS on a free port."""
    _require_dcmtk()
    server = DcmtkPacs(tmp_path / "pacs", free_port())
    yield server
    server.stop()
