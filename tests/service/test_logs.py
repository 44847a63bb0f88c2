"""Log events: JSON lines with bound context, from our loggers and from stdlib ones."""

from __future__ import annotations

import json
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from service.logs import (
    LogFormat,
    bind_association,
    bind_series,
    configure_logging,
    route_to_stdlib,
)


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """Configure logging to a file for one test; give the root logger back afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    path = tmp_path / "node.log"
    configure_logging("INFO", LogFormat.AUTO, log_file=path)
    yield path
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    logging.captureWarnings(False)
    route_to_stdlib()


def _events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_bound_series_uid_reaches_our_events_and_library_events(log_file: Path) -> None:
    with bind_series("1.2.3.4"):
        structlog.stdlib.get_logger("service.test").info("series_written", instances=5)
        logging.getLogger("some.library").warning("plain %s message", "stdlib")
    structlog.stdlib.get_logger("service.test").info("after_the_job")
    written, library, after = _events(log_file)
    assert written["event"] == "series_written"
    assert written["instances"] == 5
    assert written["series_uid"] == "1.2.3.4"
    assert library["event"] == "plain stdlib message"
    assert library["series_uid"] == "1.2.3.4"
    assert "series_uid" not in after


def test_association_binding_stays_in_its_own_thread(log_file: Path) -> None:
    log = structlog.stdlib.get_logger("service.test")

    def association() -> None:
        bind_association("SCANNER", "127.0.0.1")
        log.info("instance_refused")

    thread = threading.Thread(target=association)
    thread.start()
    thread.join(timeout=10)
    log.info("main_thread_event")
    refused, main = _events(log_file)
    assert (refused["calling_aet"], refused["peer_host"]) == ("SCANNER", "127.0.0.1")
    assert "calling_aet" not in main


def test_python_warnings_become_json_events(log_file: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("superuser privileges", UserWarning, stacklevel=1)
    (event,) = _events(log_file)
    assert event["logger"] == "py.warnings"
    assert "superuser privileges" in str(event["event"])
