"""Command line: every method on held-out test phantoms, one table per DRF, MIP figures.

    python -m model.evaluate --dataset DS_DIR --methods gaussian tuned_gaussian nlm \\
        unipet=RUN/unipet-unipet.safetensors --drfs 4 10 20 50 100 7 15 33 75 --out DIR
    python -m model.evaluate --dataset test:90-92 --size tiny --methods gaussian nlm --out DIR
    python -m model.evaluate --dataset DS_DIR --methods gaussian \\
        --drf-estimator RUN/unipet-unipet.safetensors --out DIR

``--dataset`` is a dataset folder (its manifest's test split and size are used) or a seed
spec: ``train:0-79,validation:80-89,test:90-99`` or bare test seeds (``90-92``, ``90,95``).
Test phantoms are simulated afresh from their seeds, bit-identical to the dataset cache, so
DRFs that were never simulated for training (7, 15, 33, 75) can be evaluated. A test seed
that is in a training or validation split, in the baselines' tuning seeds or in a network's
model card is refused: the evaluation never scores a phantom a method has seen.

Writes ``results.json``, ``results.md`` and ``mip_drf<DRF>.png`` (first test phantom) to
``--out`` and prints the markdown tables. With ``--drf-estimator WEIGHTS`` the calibrated DRF
estimate of those weights is also scored on every low-dose test volume
(``model.evaluation.drf_accuracy``): its table follows the method tables and is appended to
``results.md``, with the records in ``drf_estimate.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from model.errors import ModelError
from model.evaluation.drf_accuracy import DrfRecord, write_drf_report
from model.evaluation.methods import LOW_DOSE, Method, card_train_seeds, parse_methods
from model.evaluation.metrics import EvalCase, case_metrics
from model.evaluation.report import CaseRow, save_mip_figure, write_reports
from model.evaluation.tuning import VALIDATION_SEEDS
from model.simulate import SimulatedStudy, simulate_study
from model.simulate.build_dataset import TRAINING_DRFS
from model.simulate.dataset import parse_split_spec
from model.weights_io import sha256_file

__all__ = [
    "DrfEstimateFn",
    "EvalResult",
    "EvalSplit",
    "check_unseen",
    "evaluate_seed",
    "main",
    "resolve_split",
    "run_evaluation",
    "run_evaluation_parallel",
]

ALL_DRFS = (*TRAINING_DRFS, 7.0, 15.0, 33.0, 75.0)
#: ``(volume_bqml, suv_per_bqml) -> estimated DRF``, None where it cannot tell.
DrfEstimateFn = Callable[[npt.NDArray[np.float32], float], float | None]


@dataclass(frozen=True)
class EvalSplit:
    """Test seeds, the seeds they must not overlap (by where they come from), and the size."""

    test_seeds: list[int]
    seen_seeds: dict[str, list[int]]
    size: str | None


@dataclass(frozen=True)
class EvalResult:
    """What an evaluation produced: metric rows, MIP figures and DRF estimates."""

    rows: list[CaseRow]
    figures: list[Path]
    drf_records: list[DrfRecord] = field(default_factory=list)
    drf_unestimated: int = 0  # volumes the estimator could not judge (no body voxels)


def _bare_seeds(spec: str) -> list[int]:
    """``"90-92,95"`` -> [90, 91, 92, 95].

    Raises:
        ValueError: not a comma list of seeds or inclusive ranges.
    """
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise ValueError(f"bad seed item {part!r}; expected e.g. '90-92' or '95'")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else first
        seeds.extend(range(first, last + 1))
    return seeds


def resolve_split(dataset: str) -> EvalSplit:
    """Test seeds and seen seeds from a dataset folder or a seed spec (module docstring).

    Raises:
        ValueError: the spec is malformed or names no test seed.
        FileNotFoundError: a folder without ``manifest.json``.
    """
    path = Path(dataset)
    if path.is_dir():
        manifest = json.loads((path / "manifest.json").read_text())
        splits = {k: [int(s) for s in v] for k, v in manifest["splits"].items()}
        size = str(manifest["size"])
    elif ":" in dataset:
        splits, size = parse_split_spec(dataset), None
    else:
        splits, size = {"train": [], "validation": [], "test": _bare_seeds(dataset)}, None
    test = splits.get("test", [])
    if not test:
        raise ValueError(f"{dataset!r} has no test seeds")
    seen = {name: seeds for name, seeds in splits.items() if name != "test"}
    return EvalSplit(test_seeds=list(test), seen_seeds=seen, size=size)


def check_unseen(test_seeds: Iterable[int], seen: Mapping[str, Iterable[int]]) -> None:
    """Refuse any test seed that some method or split has seen.

    Raises:
        ValueError: naming the seeds and where they were seen.
    """
    test = set(test_seeds)
    clashes = {name: sorted(test & set(seeds)) for name, seeds in seen.items()}
    clashes = {name: seeds for name, seeds in clashes.items() if seeds}
    if clashes:
        raise ValueError(f"test seeds were seen before evaluation: {clashes}")


def _run_case(
    study: SimulatedStudy, drf: float, methods: Sequence[Method], case: EvalCase
) -> tuple[list[CaseRow], list[tuple[str, np.ndarray]]]:
    """Every method on one phantom at one DRF; returns the rows and the output volumes."""
    rows, outputs = [], []
    low = study.low_dose_bqml[drf]
    for method in methods:
        start = time.perf_counter()
        output = method.for_drf(drf)(low, study.spacing_mm, study.suv_per_bqml)
        seconds = time.perf_counter() - start
        rows.append(CaseRow(study.seed, drf, method.name, seconds, case_metrics(output, case)))
        outputs.append((method.name.replace("_", " "), output))
    return rows, outputs


def evaluate_seed(
    seed: int,
    first: bool,
    size: str,
    drfs: Sequence[float],
    methods: Sequence[Method],
    out: Path,
    estimate_drf: DrfEstimateFn | None = None,
) -> EvalResult:
    """Every method at every DRF on one test phantom, simulated once; ``first`` also writes
    the MIP figures (one per DRF)."""
    study = simulate_study(seed, list(drfs), size=size)  # type: ignore[arg-type]
    case = EvalCase.from_study(study)
    rows: list[CaseRow] = []
    figures: list[Path] = []
    records: list[DrfRecord] = []
    unestimated = 0
    for drf in drfs:
        case_rows, outputs = _run_case(study, drf, methods, case)
        rows.extend(case_rows)
        if estimate_drf is not None:
            estimate = estimate_drf(study.low_dose_bqml[drf], study.suv_per_bqml)
            if estimate is None:
                unestimated += 1
            else:
                records.append(DrfRecord(seed, drf, estimate))
        if first:
            panels = [*outputs, ("full dose", study.full_dose_bqml)]
            title = f"DRF {drf:g}, test seed {seed}, {size}"
            path = out / f"mip_drf{drf:g}.png"
            figures.append(
                save_mip_figure(path, panels, study.spacing_mm, study.suv_per_bqml, title)
            )
    return EvalResult(rows, figures, records, unestimated)


def _merge(results: Iterable[EvalResult]) -> EvalResult:
    """One result from per-seed results, in the order given."""
    parts = list(results)
    return EvalResult(
        rows=[row for part in parts for row in part.rows],
        figures=[path for part in parts for path in part.figures],
        drf_records=[record for part in parts for record in part.drf_records],
        drf_unestimated=sum(part.drf_unestimated for part in parts),
    )


def _check_split(split: EvalSplit, methods: Sequence[Method]) -> None:
    """Refuse test seeds seen by a split, the baselines' tuning or a network's training."""
    seen = {**split.seen_seeds, "baseline tuning": list(VALIDATION_SEEDS)}
    seen.update({f"training of {m.name}": sorted(m.train_seeds) for m in methods})
    check_unseen(split.test_seeds, seen)


def run_evaluation(
    split: EvalSplit,
    size: str,
    drfs: Sequence[float],
    methods: Sequence[Method],
    out: Path,
    n_test: int | None = None,
    estimate_drf: DrfEstimateFn | None = None,
) -> EvalResult:
    """Evaluate ``methods`` on the test seeds at every DRF; writes the MIPs of the first seed.

    ``estimate_drf``, when given, is applied to the same low-dose volumes the methods see, so
    each phantom is simulated once for both.

    Raises:
        ValueError: a test seed was seen by a split, the baselines' tuning or a network.
    """
    _check_split(split, methods)
    seeds = split.test_seeds[:n_test] if n_test else split.test_seeds
    return _merge(
        evaluate_seed(seed, index == 0, size, drfs, methods, out, estimate_drf)
        for index, seed in enumerate(seeds)
    )


@dataclass(frozen=True)
class _WorkerSetup:
    """What a worker process needs to rebuild the methods (closures do not cross processes)."""

    method_specs: tuple[str, ...]
    drf_estimator: Path | None
    threads: int


_worker_methods: list[Method] = []
_worker_estimator: list[DrfEstimateFn | None] = [None]


def _init_worker(setup: _WorkerSetup) -> None:
    """Load the methods (networks included) once per worker process."""
    torch.set_num_threads(setup.threads)
    _worker_methods[:] = parse_methods(list(setup.method_specs))
    if setup.drf_estimator is not None:
        _worker_estimator[0] = _load_drf_estimator(setup.drf_estimator, setup.threads)


def _worker_seed(
    seed: int, first: bool, size: str, drfs: tuple[float, ...], out: Path
) -> EvalResult:
    """One seed in a worker process, with the methods its initialiser loaded."""
    return evaluate_seed(seed, first, size, drfs, _worker_methods, out, _worker_estimator[0])


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
) -> EvalResult:
    """:func:`run_evaluation` with the test phantoms spread over ``jobs`` processes.

    Every phantom is independent and the methods are deterministic, so the rows are the same
    as a sequential run's, in the same order; only the wall time changes.

    Raises:
        ValueError: a test seed was seen by a split, the baselines' tuning or a network.
    """
    _check_split(split, parse_methods(list(method_specs)))
    seeds = split.test_seeds[:n_test] if n_test else split.test_seeds
    setup = _WorkerSetup(tuple(method_specs), drf_estimator, threads)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(jobs, context, initializer=_init_worker, initargs=(setup,)) as pool:
        futures = [
            pool.submit(_worker_seed, seed, index == 0, size, tuple(drfs), out)
            for index, seed in enumerate(seeds)
        ]
        return _merge(f.result() for f in futures)


def _parser() -> argparse.ArgumentParser:
    """Arguments of the evaluation CLI."""
    p = argparse.ArgumentParser(
        prog="python -m model.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", required=True, help="dataset folder or seed spec")
    p.add_argument("--methods", nargs="+", default=["gaussian", "tuned_gaussian", "nlm"])
    p.add_argument("--drfs", type=float, nargs="+", default=list(ALL_DRFS))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--size",
        choices=["tiny", "small", "full"],
        default=None,
        help="phantom size (default: the dataset's, else small)",
    )
    p.add_argument("--n-test", type=int, default=None, help="use only the first N test seeds")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="processes, each evaluating whole test phantoms (use the machine's cores)",
    )
    p.add_argument(
        "--drf-estimator",
        type=Path,
        default=None,
        metavar="WEIGHTS",
        help="safetensors weights whose DRF calibration is scored on the low-dose inputs",
    )
    return p


def _load_drf_estimator(path: Path, threads: int) -> DrfEstimateFn | None:
    """The calibrated estimate of a weights file, or None when it carries no calibration.

    Raises:
        model.errors.WeightsError: the weights file cannot be loaded.
    """
    from model.inference import load_denoiser

    denoiser = load_denoiser(path, threads=threads, device="cpu")
    if denoiser.drf_calibration is None:
        return None
    return denoiser.estimate_drf


def _report_drf(
    result: EvalResult, out: Path, weights: Path, calibrated: bool, meta: Mapping[str, object]
) -> None:
    """Print the DRF estimate table and write it next to the method tables."""
    if not calibrated:
        print(
            f"DRF estimate: {weights} carries no DRF calibration (its estimate is None); "
            "accuracy not measured"
        )
        return
    if not result.drf_records:
        print(f"DRF estimate: no volume of the evaluation could be estimated with {weights}")
        return
    meta = {
        **meta,
        "weights_sha256": sha256_file(weights),
        "training_drfs": list(TRAINING_DRFS),
        "n_unestimated": result.drf_unestimated,
    }
    json_path, markdown = write_drf_report(
        out, result.drf_records, TRAINING_DRFS, weights.name, meta
    )
    print(markdown)
    print(f"wrote {json_path} and appended the DRF estimate table to {out / 'results.md'}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation and print its tables; returns the exit status."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        split = resolve_split(args.dataset)
        methods = parse_methods(args.methods)
        size = args.size or split.size or "small"
        estimator = None
        if args.drf_estimator is not None:
            estimator = _load_drf_estimator(args.drf_estimator, args.threads)
            calibration = sorted(card_train_seeds(args.drf_estimator))
            split = replace(split, seen_seeds={**split.seen_seeds, "DRF calibration": calibration})
        start = time.perf_counter()
        if args.jobs > 1:
            result = run_evaluation_parallel(
                split,
                size,
                args.drfs,
                args.methods,
                args.out,
                args.jobs,
                args.n_test,
                args.drf_estimator if estimator is not None else None,
                args.threads,
            )
        else:
            result = run_evaluation(
                split, size, args.drfs, methods, args.out, args.n_test, estimator
            )
    except (ValueError, FileNotFoundError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows, figures = result.rows, result.figures
    seeds = sorted({r.seed for r in rows})
    meta = {"size": size, "test_seeds": seeds, "drfs": list(args.drfs)}
    names = [m.name for m in methods]
    json_path, md_path, markdown = write_reports(
        args.out, rows, args.drfs, names, TRAINING_DRFS, meta
    )
    print(markdown)
    if args.drf_estimator is not None:
        _report_drf(result, args.out, args.drf_estimator, estimator is not None, meta)
    compared = ", ".join(n for n in names if n != LOW_DOSE)
    print(
        f"wrote {json_path}, {md_path} and {len(figures)} figures "
        f"({time.perf_counter() - start:.0f} s; methods: {compared})"
    )
    for path in figures:
        print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
