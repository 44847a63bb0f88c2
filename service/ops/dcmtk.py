"""Finding and running dcmtk's command-line peers (storescu, storescp, echoscu).

Python packages may install console scripts with the same names ahead of dcmtk on PATH
(pynetdicom ships its own ``storescu``), so we pick the binary that says it is dcmtk.
Debian's dcmtk leaves Nagle's algorithm on unless ``TCP_NODELAY=1`` is in its environment,
which caps it at ~20 instances/s; ``dcmtk_env`` sets it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from functools import cache
from pathlib import Path
from subprocess import Popen

from service.errors import NodeError
from service.runtime import wait_until

_CANDIDATE_DIRS = ("/usr/bin", "/usr/local/bin", "/opt/dcmtk/bin")


@cache
def dcmtk_binary(name: str) -> Path:
    """Absolute path of dcmtk's ``name``; raises NodeError if dcmtk is not installed."""
    candidates = [Path(d) / name for d in _CANDIDATE_DIRS]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if not candidate.is_file():
            continue
        probe = subprocess.run(
            [str(candidate), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        if "dcmtk" in (probe.stdout + probe.stderr).lower():
            return candidate
    raise NodeError(f"dcmtk {name} not found (apt-get install dcmtk)")


def dcmtk_env() -> dict[str, str]:
    """Environment for dcmtk tools: Nagle off."""
    return {**os.environ, "TCP_NODELAY": "1"}


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_storescp(folder: Path, port: int, ae_title: str, timeout_s: float = 15.0) -> Popen[bytes]:
    """dcmtk storescp on loopback accepting any storage class, one .dcm file per instance.

    Raises:
        NodeError: it did not accept connections within ``timeout_s``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            str(dcmtk_binary("storescp")),
            "-aet",
            ae_title,
            "-od",
            str(folder),
            "+xa",
            "-pm",
            "-fe",
            ".dcm",
            str(port),
        ],
        env=dcmtk_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if wait_until(lambda: _listening(port), timeout_s, interval_s=0.05):
        return process
    process.kill()
    process.wait(timeout=10)
    raise NodeError(f"storescp did not start on port {port}")


def storescu(
    folder: Path,
    port: int,
    called_aet: str,
    calling_aet: str,
    host: str = "127.0.0.1",
    timeout_s: float = 600.0,
) -> subprocess.CompletedProcess[str]:
    """Send every file under ``folder`` like a scanner: dcmtk storescu, one association,
    proposing only the presentation contexts the files need."""
    return subprocess.run(
        [
            str(dcmtk_binary("storescu")),
            "-aet",
            calling_aet,
            "-aec",
            called_aet,
            "+sd",
            "+r",
            "-R",
            host,
            str(port),
            str(folder),
        ],
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
