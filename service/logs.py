"""Logging for every node process: structlog events with key-value fields, no PHI.

Our modules log an event name plus fields (``log.info("series_written", series_uid=...)``);
libraries that use stdlib ``logging`` go through the same formatter. A person at a terminal
gets structlog's console renderer; a collector (stderr not a TTY, or ``logging.format: json``)
gets one JSON object per line, so every field can be queried.

No PHI at any level: we log UIDs, AE titles, counts, timings and status codes only, and
pynetdicom's logging of request identifiers (which include patient attributes) is switched off.
Context bound with ``bind_series`` (the series UID of a job) rides along on every event of
that job, also from stdlib loggers.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path

import structlog
from pynetdicom import _config as pynetdicom_config


class LogFormat(StrEnum):
    """How events are rendered on stderr."""

    AUTO = "auto"  # console on a terminal, JSON otherwise
    JSON = "json"
    CONSOLE = "console"


def _renderer(log_format: LogFormat, tty: bool) -> structlog.typing.Processor:
    if log_format is LogFormat.AUTO:
        log_format = LogFormat.CONSOLE if tty else LogFormat.JSON
    if log_format is LogFormat.CONSOLE:
        return structlog.dev.ConsoleRenderer(colors=tty)
    return structlog.processors.JSONRenderer()


def route_to_stdlib() -> None:
    """Send structlog events to stdlib logging until ``configure_logging`` sets the renderer.

    structlog's own default prints to stdout, which would mix events into the output of
    commands and benchmarks that import the node without configuring logging.
    """
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.render_to_log_kwargs,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def _handler(log_file: Path | None) -> tuple[logging.Handler, bool]:
    """The handler events go to, and whether a person reads it on a terminal."""
    if log_file is None:
        return logging.StreamHandler(sys.stderr), sys.stderr.isatty()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    return logging.FileHandler(log_file, encoding="utf-8"), False


def configure_logging(
    level: str = "INFO", log_format: LogFormat = LogFormat.AUTO, log_file: Path | None = None
) -> None:
    """Route structlog and stdlib logging through one formatter; idempotent.

    Events go to stderr, or appended to ``log_file`` (JSON unless configured otherwise) when a
    command has its own output to show, such as ``unipet-node demo``'s result table.
    """
    pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler, tty = _handler(log_file)
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(LogFormat(log_format), tty),
        ],
        foreign_pre_chain=shared,
    )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for previous in root.handlers:
        if isinstance(previous, logging.FileHandler):
            previous.close()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Python warnings (e.g. Celery's) become events too, not bare lines between the JSON ones.
    logging.captureWarnings(True)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


@contextmanager
def bind_series(series_uid: str, **fields: str) -> Iterator[None]:
    """Bind the series UID (and other non-PHI fields) to every event inside the block."""
    with structlog.contextvars.bound_contextvars(series_uid=series_uid, **fields):
        yield


def bind_association(calling_aet: str, peer_host: str) -> None:
    """Bind the peer of a DICOM association to every later event of the calling thread.

    pynetdicom runs each association in a thread of its own, and a new thread starts with an
    empty context, so binding once when the association is requested labels exactly that
    association's events (C-STORE refusals, admission, pynetdicom's warnings).
    """
    structlog.contextvars.bind_contextvars(calling_aet=calling_aet, peer_host=peer_host)
