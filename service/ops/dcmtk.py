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
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from subprocess import Popen

from pydicom import dcmread
from pydicom.uid import UID

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
    propose: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Send every file under ``folder`` like a scanner: dcmtk storescu, one association,
    proposing only the presentation contexts the files need. ``propose`` is storescu's option
    for a compressed syntax (e.g. "-xt" JPEG-LS lossless); without it storescu proposes
    uncompressed syntaxes only and would decompress compressed files first."""
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
            *([propose] if propose else []),
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


@dataclass(frozen=True)
class DemoSyntax:
    """How the demo compresses a series and how storescu must propose it."""

    uid: str
    encoder: tuple[str, ...]  # dcmtk command and options; empty: pydicom (openjpeg)
    propose: str


#: ``unipet-node demo --transfer-syntax``: what a scanner or archive would send.
DEMO_SYNTAXES = {
    "jpeg-ls": DemoSyntax("1.2.840.10008.1.2.4.80", ("dcmcjpls", "+el"), "-xt"),
    "jpeg-ls-near": DemoSyntax("1.2.840.10008.1.2.4.81", ("dcmcjpls", "+en"), "-xu"),
    "jpeg-lossless": DemoSyntax("1.2.840.10008.1.2.4.70", ("dcmcjpeg", "+e1"), "-xs"),
    "rle": DemoSyntax("1.2.840.10008.1.2.5", ("dcmcrle",), "-xr"),
    "jpeg2000": DemoSyntax("1.2.840.10008.1.2.4.90", (), "-xv"),
}


def compress_folder(folder: Path, syntax: DemoSyntax, timeout_s: float = 120.0) -> None:
    """Re-encode every file in ``folder`` in place: dcmtk's encoders, or pydicom's
    pylibjpeg-openjpeg encoder for JPEG 2000 (dcmtk cannot encode it)."""
    for path in sorted(folder.glob("*.dcm")):
        if syntax.encoder:
            result = subprocess.run(
                [str(dcmtk_binary(syntax.encoder[0])), *syntax.encoder[1:], str(path), str(path)],
                env=dcmtk_env(),
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
            if result.returncode != 0:
                raise NodeError(
                    f"{syntax.encoder[0]} failed on {path.name}: {result.stderr[-300:]}"
                )
            continue
        ds = dcmread(path)
        ds.compress(UID(syntax.uid), generate_instance_uid=False)
        ds.save_as(path, enforce_file_format=True)
