"""How the node's processes live and die: stop deadlines, stack dumps, children tied to us.

Light on purpose (no torch, no Celery): every role imports it before it starts anything, the
web role included, so catching a stop signal never costs loading the model's libraries.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

import structlog

log = structlog.stdlib.get_logger(__name__)

#: How long a process of the node may take to exit once asked to stop: every part's own bounded
#: stop fits in it, and it is below compose's ``stop_grace_period`` (60 s), so a stop that
#: overruns leaves its thread stacks in the log before Docker's SIGKILL would leave nothing.
EXIT_DEADLINE_S = 50.0

#: ``prctl(PR_SET_PDEATHSIG, sig)``: the signal the kernel sends a child when the thread that
#: started it dies. Looked up here, not in the forked child, which should call nothing new.
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def enable_stack_dumps() -> None:
    """``kill -USR1 <pid>`` writes every thread's stack to stderr; the process goes on.

    How an operator sees where a process that does not stop, or does not answer, is waiting.
    (A Celery worker does the same on SIGUSR1 by itself.)
    """
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def arm_exit_deadline(
    kill_children: Callable[[], None], deadline_s: float = EXIT_DEADLINE_S
) -> None:
    """From now on this process must be gone within ``deadline_s``.

    Called when a stop begins. A graceful stop waits on threads, sockets and children, and
    the interpreter joins every non-daemon thread on exit; if any of them never ends, the
    process would hang until someone kills it, with no trace of why. When the deadline
    passes, a daemon timer logs ``stop_overdue``, dumps every thread's stack to stderr, runs
    ``kill_children`` (our own child processes, by PID) and exits with status 1.
    """

    def overdue() -> None:
        log.error("stop_overdue", deadline_s=deadline_s)
        faulthandler.dump_traceback(all_threads=True)
        try:
            kill_children()
        finally:
            os._exit(1)

    timer = threading.Timer(deadline_s, overdue)
    timer.daemon = True
    timer.start()


def die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """``preexec_fn``: the kernel SIGTERMs this child when the thread that started it ends.

    A node killed hard (SIGKILL, the OOM killer) would otherwise leave its worker consuming
    from the queues and its embedded Redis holding the spool's socket, so the restarted node
    would refuse to start. Start children from the main thread (the node does), since the
    signal follows the starting thread. Linux only; elsewhere a no-op.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def catch_stop_signals() -> list[int]:
    """From now on SIGINT and SIGTERM only record themselves in the returned list, and
    SIGUSR1 dumps every thread's stack (``enable_stack_dumps``).

    Called before a role starts its parts, so a stop asked for during start-up is a clean
    stop once start-up is done, not a default-action kill that leaves children behind. The
    handler takes no lock: it runs between two bytecodes of the main thread, which may then
    hold any lock (``Event.set`` there can deadlock).
    """
    enable_stack_dumps()
    received: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: received.append(number))
    return received


def wait_for_stop(received: list[int], poll_s: float = 0.2) -> None:
    """Block until ``catch_stop_signals``' list holds a signal.

    The main thread looks every ``poll_s``, so the stop also begins when the kernel delivered
    the signal to another thread and nothing woke the main one.
    """
    while not received:
        time.sleep(poll_s)
