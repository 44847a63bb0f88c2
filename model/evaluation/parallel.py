"""An evaluation spread over processes, whole test phantoms per process.

Every phantom is independent and the methods are deterministic, so the rows are those of the
one-process run (``model.evaluation.runner``) in the same order; only the wall time changes.
Methods hold closures and loaded networks, which do not cross processes, so each worker
rebuilds them once from their command-line specs.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from model.evaluation.methods import Method, parse_methods
from model.evaluation.reuse import ReusedRows
from model.evaluation.runner import (
    DrfEstimateFn,
    EvalResult,
    Matched,
    check_split,
    evaluate_phantom,
    load_drf_estimator,
    merge_results,
    phantoms_to_score,
)
from model.evaluation.split import EvalPhantom, EvalSplit

__all__ = ["run_evaluation_parallel"]


@dataclass(frozen=True)
class _WorkerSetup:
    """What a worker process needs to rebuild the methods (closures do not cross processes)."""

    method_specs: tuple[str, ...]
    drf_estimator: Path | None
    threads: int
    match: Matched
    reuse: ReusedRows | None


_worker_methods: list[Method] = []
_worker_estimator: list[DrfEstimateFn | None] = [None]
_worker_match: list[Matched] = [None]
_worker_reuse: list[ReusedRows | None] = [None]


def _init_worker(setup: _WorkerSetup) -> None:
    """Load the methods (networks included) once per worker process."""
    torch.set_num_threads(setup.threads)
    _worker_methods[:] = parse_methods(list(setup.method_specs))
    _worker_match[0] = setup.match
    _worker_reuse[0] = setup.reuse
    if setup.drf_estimator is not None:
        _worker_estimator[0] = load_drf_estimator(setup.drf_estimator, setup.threads)


def _worker_phantom(
    phantom: EvalPhantom, first: bool, drfs: tuple[float, ...], out: Path
) -> EvalResult:
    """One phantom in a worker process, with the methods its initialiser loaded."""
    return evaluate_phantom(
        phantom,
        first,
        drfs,
        _worker_methods,
        out,
        _worker_estimator[0],
        _worker_match[0],
        _worker_reuse[0],
    )


def run_evaluation_parallel(
    split: EvalSplit,
    size: str,
    drfs: Sequence[float],
    method_specs: Sequence[str],
    out: Path,
    jobs: int,
    n_test: int | None = None,
    drf_estimator: Path | None = None,
    threads: int = 1,
    match: Matched = None,
    reuse: ReusedRows | None = None,
) -> EvalResult:
    """:func:`run_evaluation` with the test phantoms spread over ``jobs`` processes.

    Every phantom is independent and the methods are deterministic, so the rows are the same
    as a sequential run's, in the same order; only the wall time changes.

    Raises:
        ValueError: a test seed was seen by a split, the baselines' tuning or a network.
    """
    check_split(split, parse_methods(list(method_specs)))
    phantoms = phantoms_to_score(split, size, n_test)
    setup = _WorkerSetup(tuple(method_specs), drf_estimator, threads, match, reuse)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, context, initializer=_init_worker, initargs=(setup,)) as pool:
        futures = [
            pool.submit(_worker_phantom, phantom, index == 0, tuple(drfs), out)
            for index, phantom in enumerate(phantoms)
        ]
        return merge_results(f.result() for f in futures)
