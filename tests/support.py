"""Helpers shared by tests: free ports, bounded waits, a dcmtk storescp PACS."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import dcmread
from pydicom.uid import (
    Comprehensive3DSRStorage,
    EncapsulatedPDFStorage,
    PositronEmissionTomographyImageStorage,
)

if TYPE_CHECKING:
    from service.config import NodeSettings
    from service.runtime import AllInOneNode

#: The e2e ``node_factory`` fixture: ``make(destination_port, **sections)`` starts a node.
NodeFactory = Callable[..., tuple["AllInOneNode", "NodeSettings"]]

PET_IMAGE_STORAGE = PositronEmissionTomographyImageStorage
QUALITY_REPORT_SOP_CLASSES = (Comprehensive3DSRStorage, EncapsulatedPDFStorage)


class ListenerNode:
    """A running listener with its spool and state store, as listener tests see it."""

    def __init__(self, settings: NodeSettings) -> None:
        from service.pipeline.listener import start_listener
        from service.pipeline.spool import Spool
        from service.pipeline.store import StateStore

        self.settings = settings
        self.spool = Spool(settings.spool.path)
        self.state = StateStore(settings.database_url)
        self.server = start_listener(settings, self.spool, self.state)
        self.port = settings.listener.port

    def stop(self) -> None:
        """Shut the listener down and close the state store."""
        self.server.shutdown()
        self.state.close()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll until true or the bounded timeout passes (the node's own bounded wait)."""
    from service.runtime import wait_until

    return wait_until(predicate, timeout_s, interval_s)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc), in whatever session or group it runs."""
    found: list[int] = []
    todo = [pid]
    while todo:
        for children in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                kids = [int(child) for child in children.read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def stop_node(process: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 120.0) -> None:
    """SIGTERM a ``unipet-node serve`` and require a graceful stop (exit status 0).

    If it does not stop in time, SIGUSR1 first (the node writes every thread's stack to its
    stderr, ``log_path``), then SIGKILL it and every process it started (the worker runs in
    its own session: never leave it on a broker later tests use). Either failure raises with
    the end of the node's log, so the reason is in the test report.
    """
    children = descendants(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGUSR1)
        time.sleep(2)
    if process.returncode != 0:
        for pid in (process.pid, *children):  # pids taken while the node still ran them
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)
        tail = log_path.read_text(encoding="utf-8", errors="replace")[-8000:]
        raise AssertionError(
            f"unipet-node serve did not stop gracefully (status {process.returncode}); "
            f"end of its log:\n{tail}"
        )


def port_open(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class DcmtkPacs:
    """A dcmtk storescp acting as the PACS: files land in ``folder``."""

    ae_title = "TESTPACS"

    def __init__(self, folder: Path, port: int) -> None:
        from service.ops.dcmtk import start_storescp

        self.folder = folder
        self.port = port
        self.process = start_storescp(folder, port, self.ae_title)

    def files(self) -> list[Path]:
        """Every instance stored so far."""
        return sorted(self.folder.rglob("*.dcm"))

    def images(self) -> list[Path]:
        """The PET images stored so far (not the quality report's SR and PDF instances)."""
        return [
            path
            for path in self.files()
            if dcmread(path, stop_before_pixels=True).SOPClassUID == PET_IMAGE_STORAGE
        ]

    def reports(self) -> list[Path]:
        """The quality report instances (Comprehensive 3D SR, Encapsulated PDF) stored so far."""
        return [
            path
            for path in self.files()
            if dcmread(path, stop_before_pixels=True).SOPClassUID in QUALITY_REPORT_SOP_CLASSES
        ]

    def stop(self) -> None:
        """Stop storescp."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
