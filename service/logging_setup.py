"""Logging for every node process: stdlib loggers rendered as JSON lines by structlog.

No PHI at any level (STYLE.md section 8): our modules log UIDs, AE titles, counts and timings
only, and pynetdicom's logging of request identifiers is switched off here.
"""

from __future__ import annotations

import logging
import sys

import structlog
from pynetdicom import _config as pynetdicom_config


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    """Route all stdlib logging through structlog's formatter to stderr."""
    pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        processor=renderer,
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
