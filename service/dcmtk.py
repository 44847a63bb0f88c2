"""Finding and running dcmtk's command-line peers (storescu, storescp, echoscu).

Python packages may install console scripts with the same names ahead of dcmtk on PATH
(pynetdicom ships its own ``storescu``), so we pick the binary that says it is dcmtk.
Debian's dcmtk leaves Nagle's algorithm on unless ``TCP_NODELAY=1`` is in its environment,
which caps it at ~20 instances/s; ``dcmtk_env`` sets it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

from service.errors import NodeError

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
