"""A process's life (``service.process``): a stop that never ends is cut, signals are caught
before start-up, and the handler records without waiting on anything."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


def _python(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter: signals and exits are the process's own."""
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=50, check=False
    )


def test_a_stop_that_never_ends_is_cut_at_its_deadline_with_every_stack_in_the_log(
    tmp_path: Path,
) -> None:
    """A non-daemon thread that never ends would keep the interpreter from exiting for good;
    the armed deadline kills the children, dumps the stacks and exits with status 1."""
    marker = tmp_path / "children-killed"
    script = (
        "import threading, time\n"
        "from pathlib import Path\n"
        "from service.process import arm_exit_deadline\n"
        "def stuck_in_stop():\n"
        "    time.sleep(60)\n"
        "threading.Thread(target=stuck_in_stop, name='stuck-in-stop').start()\n"
        f"arm_exit_deadline(lambda: Path({str(marker)!r}).touch(), deadline_s=0.5)\n"
    )
    started = time.monotonic()
    result = _python(script)
    assert result.returncode == 1
    assert time.monotonic() - started < 40, "cut at the deadline, not at the thread's end"
    assert marker.exists(), "the children were killed"
    assert "stop_overdue" in result.stdout + result.stderr
    assert "stuck_in_stop" in result.stderr, "the stack of the thread it waited on"


def test_a_stop_that_ends_in_time_exits_with_its_own_status() -> None:
    script = (
        "from service.process import arm_exit_deadline\n"
        "arm_exit_deadline(lambda: None, deadline_s=30)\n"
    )
    result = _python(script)
    assert result.returncode == 0, result.stderr
    assert "stop_overdue" not in result.stderr


def test_a_stop_signal_during_start_up_is_kept_for_after_it() -> None:
    """A SIGTERM before the role waits for one must not kill it with the default action
    (its children would be left behind); the wait then returns at once."""
    script = (
        "import os, signal, sys\n"
        "from service.process import catch_stop_signals, wait_for_stop\n"
        "received = catch_stop_signals()\n"
        "os.kill(os.getpid(), signal.SIGTERM)  # while still 'starting'\n"
        "wait_for_stop(received)\n"
        "print('stopped cleanly after', received)\n"
    )
    result = _python(script)
    assert result.returncode == 0, result.stderr
    assert f"stopped cleanly after [{int(signal.SIGTERM)}]" in result.stdout


def test_sigusr1_dumps_every_stack_and_the_process_goes_on() -> None:
    script = (
        "import os, signal, time\n"
        "from service.process import catch_stop_signals\n"
        "catch_stop_signals()\n"
        "def waiting_here():\n"
        "    os.kill(os.getpid(), signal.SIGUSR1)\n"
        "    time.sleep(0.5)\n"
        "waiting_here()\n"
        "print('still running')\n"
    )
    result = _python(script)
    assert result.returncode == 0, result.stderr
    assert "in waiting_here" in result.stderr
    assert "still running" in result.stdout
