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

import structlog
from pynetdicom import _config as pynetdicom_config


class LogFormat(StrEnum):
    """How events are rendered on stderr."""

    AUTO = "auto"  # console on a terminal, JSON otherwise
    JSON = "json"
    CONSOLE = "console"


def _renderer(log_format: LogFormat) -> structlog.typing.Processor:
    if log_format is LogFormat.AUTO:
        log_format = LogFormat.CONSOLE if sys.stderr.isatty() else LogFormat.JSON
    if log_format is LogFormat.CONSOLE:
        return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
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


def configure_logging(level: str = "INFO", log_format: LogFormat = LogFormat.AUTO) -> None:
    """Route structlog and stdlib logging through one formatter to stderr; idempotent."""
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
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(LogFormat(log_format)),
        ],
        foreign_pre_chain=shared,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)


@contextmanager
def bind_series(series_uid: str, **fields: str) -> Iterator[None]:
    """Bind the series UID (and other non-PHI fields) to every event inside the block."""
    with structlog.contextvars.bound_contextvars(series_uid=series_uid, **fields):
        yield
