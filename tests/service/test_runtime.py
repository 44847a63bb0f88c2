"""Bounded waits and the node's version, as the parts of the node use them."""

from __future__ import annotations

import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

from service.dicom.provenance import node_version
from service.runtime import wait_until


def test_wait_until_returns_as_soon_as_the_predicate_holds() -> None:
    calls: list[int] = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    assert wait_until(third_time, timeout_s=30.0, interval_s=0.01) is True
    assert len(calls) == 3


def test_wait_until_gives_up_with_false_after_its_timeout() -> None:
    calls: list[int] = []

    def never() -> bool:
        calls.append(1)
        return False

    assert wait_until(never, timeout_s=0.2, interval_s=0.05) is False
    assert 2 <= len(calls) <= 10


def test_node_version_is_the_installed_distribution_version() -> None:
    assert node_version() == version("unipet-node")


def test_a_stop_that_never_ends_is_cut_at_its_deadline_with_every_stack_in_the_log(
    tmp_path: Path,
) -> None:
    """A non-daemon thread that never ends would keep the interpreter from exiting for good;
    the armed deadline kills the children, dumps the stacks and exits with status 1."""
    marker = tmp_path / "children-killed"
    script = (
        "import threading, time\n"
        "from pathlib import Path\n"
        "from service.runtime import arm_exit_deadline\n"
        "def stuck_in_stop():\n"
        "    time.sleep(60)\n"
        "threading.Thread(target=stuck_in_stop, name='stuck-in-stop').start()\n"
        f"arm_exit_deadline(lambda: Path({str(marker)!r}).touch(), deadline_s=0.5)\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50, check=False
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 40, "cut at the deadline, not at the thread's end"
    assert marker.exists(), "the children were killed"
    assert "stop_overdue" in result.stdout + result.stderr
    assert "stuck_in_stop" in result.stderr, "the stack of the thread it waited on"


def test_a_stop_that_ends_in_time_exits_with_its_own_status() -> None:
    script = (
        "from service.runtime import arm_exit_deadline\n"
        "arm_exit_deadline(lambda: None, deadline_s=30)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "stop_overdue" not in result.stderr
