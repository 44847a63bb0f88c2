"""Durability on disk: flushing a file's data or a folder's entries with fsync.

A received instance, a spool folder and a written derived instance only count as kept once
the kernel has put them on disk: the spool answers Success and the writer hands a series to
the sender only after these calls return.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_path"]


def fsync_path(path: Path) -> None:
    """fsync a file (its data) or a folder (its entries); any read descriptor will do.

    Raises:
        OSError: the path cannot be opened or the disk refuses the flush.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
