"""What a worker process holds between tasks: settings, state, spool and one loaded model.

Settings are built once by the CLI (``unipet-node worker``) and handed to ``init_context``
before Celery forks its pool; the denoiser is loaded lazily, once per process, on the first
task (so a CUDA context is created in the child, never inherited across fork).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.config import NodeSettings
from service.pipeline.inference import Denoiser, load_denoiser
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore


@dataclass
class WorkerContext:
    """Per-process resources of a worker."""

    settings: NodeSettings
    spool: Spool
    state: StateStore
    _denoiser: Denoiser | None = field(default=None, repr=False)

    @property
    def denoiser(self) -> Denoiser:
        """The model, loaded on first use and kept for the life of the process."""
        if self._denoiser is None:
            self._denoiser = load_denoiser(self.settings.model)
        return self._denoiser


_context: WorkerContext | None = None


def init_context(settings: NodeSettings) -> WorkerContext:
    """Set this process's context (called once at worker start)."""
    global _context
    _context = WorkerContext(
        settings=settings,
        spool=Spool(settings.spool.path),
        state=StateStore(settings.database_url),
    )
    return _context


def get_context() -> WorkerContext:
    """This process's context; raises if the worker was started without one."""
    if _context is None:
        raise RuntimeError(
            "worker context not initialised: start workers with `unipet-node worker`"
        )
    return _context


def reset_process_resources() -> None:
    """Drop inherited database connections after fork (SQLAlchemy pools are not fork-safe)."""
    if _context is not None:
        _context.state.engine.dispose(close=False)
        _context.state.read_engine.dispose(close=False)
