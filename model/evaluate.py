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

This module is the command line only: the runners live in ``model.evaluation`` (``split``,
``runner``, ``parallel``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from model.errors import ModelError
from model.evaluation.drf_accuracy import write_drf_report
from model.evaluation.methods import LOW_DOSE, card_train_seeds, parse_methods
from model.evaluation.parallel import run_evaluation_parallel
from model.evaluation.report import write_reports
from model.evaluation.runner import EvalResult, load_drf_estimator, run_evaluation
from model.evaluation.split import resolve_split
from model.simulate.build_dataset import TRAINING_DRFS
from model.weights_io import sha256_file

__all__ = ["ALL_DRFS", "main"]

ALL_DRFS = (*TRAINING_DRFS, 7.0, 15.0, 33.0, 75.0)


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
            estimator = load_drf_estimator(args.drf_estimator, args.threads)
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
