"""A whole node (listener, dispatcher, Celery worker process) per test, on real peers."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import NodeFactory

from service.config import NodeSettings, load_settings
from service.runtime import AllInOneNode

SettingsFactory = Callable[..., NodeSettings]


def node_settings(
    tmp_path: Path, redis_url: str, destination_port: int, **sections: Any
) -> NodeSettings:
    """Test settings: loopback, short timers, queues private to this test."""
    from support import free_port

    suffix = uuid.uuid4().hex[:8]
    defaults: dict[str, Any] = {
        "listener": {"bind_address": "127.0.0.1", "port": free_port(), "allowed_calling_aets": []},
        "destinations": [
            {"name": "pacs", "ae_title": "TESTPACS", "host": "127.0.0.1", "port": destination_port}
        ],
        "spool": {"path": str(tmp_path / "spool"), "min_free_bytes": 10 * 1024**2},
        "queue": {
            "broker_url": redis_url,
            "embedded_redis": False,
            "denoise_queue": f"cpu-{suffix}",
            "send_queue": f"send-{suffix}",
            "retry_backoff_s": 0.5,
            "retry_backoff_max_s": 1.0,
        },
        "completeness": {"quiet_period_s": 2.0, "poll_interval_s": 0.2, "forced_timeout_s": 30.0},
        "sender": {"network_timeout_s": 5.0, "acse_timeout_s": 5.0, "dimse_timeout_s": 10.0},
    }
    for name, values in sections.items():
        if isinstance(values, dict) and isinstance(defaults.get(name), dict):
            defaults[name] = {**defaults[name], **values}
        else:
            defaults[name] = values
    return load_settings(**defaults)


@pytest.fixture
def settings_factory(tmp_path: Path, redis_url: str) -> SettingsFactory:
    """Test settings for a node that a test starts itself (e.g. ``unipet-node serve``)."""

    def make(destination_port: int, **sections: Any) -> NodeSettings:
        return node_settings(tmp_path, redis_url, destination_port, **sections)

    return make


@pytest.fixture
def node_factory(tmp_path: Path, redis_url: str) -> Iterator[NodeFactory]:
    """Start nodes for a test and stop them all afterwards."""
    started: list[AllInOneNode] = []

    def make(destination_port: int, **sections: Any) -> tuple[AllInOneNode, NodeSettings]:
        settings = node_settings(tmp_path, redis_url, destination_port, **sections)
        node = AllInOneNode(settings)
        node.start()
        started.append(node)
        return node, settings

    yield make
    for node in started:
        node.stop()
