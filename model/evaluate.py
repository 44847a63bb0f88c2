"""Command line: every method on held-out test phantoms, one table per DRF, MIP figures.

    python -m model.evaluate --dataset DS_DIR --methods gaussian tuned_gaussian nlm \\
        unipet=RUN/unipet-unipet.safetensors --drfs 4 10 20 50 100 7 15 33 75 --out DIR
    python -m model.evaluate --dataset test:90-92 --size tiny --methods gaussian nlm --out DIR
    python -m model.evaluate --dataset DS_DIR --methods gaussian \\
        --drf-estimator RUN/unipet-unipet.safetensors --out DIR
    python -m model.evaluate --dataset /data/ds11_test --dataset /data/ds11_unseen \\
        --methods gaussian nlm unipet=W/unipet-1.1.0.safetensors vanilla=W/vanilla.safetensors \\
        --drf-estimator W/unipet-1.1.0.safetensors --jobs 8 --out DIR

``--dataset`` is a dataset folder (its manifest's test split and size are used) or a seed
spec: ``train:0-79,validation:80-89,test:90-99`` or bare test seeds (``90-92``, ``90,95``);
give it several times to pool test sets. Phantoms of the fixed sizes are simulated afresh
from their seeds, bit-identical to the dataset cache, so DRFs that were never simulated for
training (7, 15, 33, 75) can be evaluated. Folders of size ``clinical`` (or any folder with
``--cached``) are read from their files instead, at the DRFs stored in every one of them
(the default ``--drfs`` then), each row labelled with its folder, scanner profile and whether
that profile was held out of training. A test seed that is in a training or validation
split, in the baselines' tuning seeds or in a network's model card is refused: the
evaluation never scores a phantom a method has seen.

Writes ``results.json``, ``results.md`` and ``mip_drf<DRF>.png`` (first test phantom) to
``--out`` and prints the markdown tables: per-DRF figures, lesion tables (SUVpeak/SUVmax
bias vs the noise-free reconstruction and the full dose, NEMA contrast recovery and
background variability beside a Gaussian matched to UniPET's noise, false hot spots),
tables by scanner group, the full-dose-in check at DRF 1 and the target checks.
``results.json`` records what made each method's rows (weights hash, filter settings), so
``--reuse EARLIER/results.json [...]`` takes the rows of unchanged methods instead of running
them again (``model.evaluation.reuse``; from several files, each method from the first that
has it): a release is scored network by network as its runs finish. With
``--drf-estimator WEIGHTS`` the calibrated DRF estimate of those weights is also scored on
every low-dose test volume (``model.evaluation.drf_accuracy``): its table follows the method
tables and is appended to ``results.md``, with the records in ``drf_estimate.json``.

This module is the command line only: the runners live in ``model.evaluation`` (``split``,
``runner``, ``parallel``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from model.errors import ModelError
from model.evaluation.drf_accuracy import overall_accuracy, write_drf_report
from model.evaluation.full_dose import full_dose_input
from model.evaluation.methods import (
    LOW_DOSE,
    Method,
    card_train_seeds,
    card_training_drfs,
    parse_methods,
)
from model.evaluation.parallel import run_evaluation_parallel
from model.evaluation.report import REFERENCE_NOTE, write_reports
from model.evaluation.reuse import load_reusable, method_identities
from model.evaluation.runner import EvalResult, Matched, load_drf_estimator, run_evaluation
from model.evaluation.split import EvalSplit, resolve_splits
from model.evaluation.targets import TargetCheck, TargetNames, check_targets, targets_markdown
from model.simulate.build_dataset import TRAINING_DRFS
from model.weights_io import sha256_file

__all__ = ["ALL_DRFS", "main"]

ALL_DRFS = (1.0, *TRAINING_DRFS, 7.0, 15.0, 33.0, 75.0)


def _parser() -> argparse.ArgumentParser:
    """Arguments of the evaluation CLI."""
    p = argparse.ArgumentParser(
        prog="python -m model.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset",
        required=True,
        action="append",
        help="dataset folder or seed spec; repeat to pool several test sets",
    )
    p.add_argument(
        "--split",
        choices=["test", "validation"],
        default="test",
        help="split of each dataset folder to score: validation to choose between training "
        "recipes without looking at the test phantoms",
    )
    p.add_argument("--methods", nargs="+", default=["gaussian", "tuned_gaussian", "nlm"])
    p.add_argument(
        "--drfs",
        type=float,
        nargs="+",
        default=None,
        help="DRFs to evaluate (default: those of every cached folder, else 1, the training "
        "DRFs and 7 15 33 75)",
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--size",
        choices=["tiny", "small", "full"],
        default=None,
        help="size of simulated phantoms (default: the dataset's, else small)",
    )
    p.add_argument(
        "--cached",
        action="store_true",
        help="read every dataset folder's test phantoms from its files (size clinical always is)",
    )
    p.add_argument("--n-test", type=int, default=None, help="use only the first N test phantoms")
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
    p.add_argument(
        "--training-drfs",
        type=float,
        nargs="+",
        default=None,
        help="DRFs the networks were trained on (default: the first network's model card, "
        "else the 1.0 training DRFs)",
    )
    p.add_argument(
        "--matched-gaussian",
        nargs="*",
        default=None,
        metavar="NAME",
        help="networks that get a Gaussian matched to their noise (default: the UniPET "
        "method if evaluated, else every network; none given: no matched Gaussian)",
    )
    p.add_argument("--unipet-name", default="unipet", help="method name of UniPET (targets)")
    p.add_argument("--vanilla-name", default="vanilla", help="method name of vanilla (targets)")
    p.add_argument(
        "--reuse",
        type=Path,
        nargs="+",
        default=None,
        metavar="RESULTS_JSON",
        help="earlier results.json files: methods made the same way are taken from them (each "
        "from the first that has it), not run again (model.evaluation.reuse)",
    )
    return p


def _drfs(requested: Sequence[float] | None, split: EvalSplit) -> list[float]:
    """The DRFs to evaluate: the requested ones, which cached files must all hold.

    Raises:
        ValueError: a requested DRF that a cached dataset lacks.
    """
    if requested is None:
        return list(split.drfs if split.drfs is not None else ALL_DRFS)
    missing = [d for d in requested if split.drfs is not None and d not in split.drfs]
    if missing:
        raise ValueError(f"DRFs {missing} are not stored in every cached dataset")
    return list(requested)


def _training_drfs(requested: Sequence[float] | None, specs: Sequence[str]) -> list[float]:
    """The DRFs the networks were trained on (see ``--training-drfs``)."""
    if requested is not None:
        return list(requested)
    for spec in specs:
        if "=" in spec and (drfs := card_training_drfs(Path(spec.split("=", 1)[1]))):
            return list(drfs)
    return list(TRAINING_DRFS)


def _report_drf(
    result: EvalResult,
    out: Path,
    weights: Path,
    calibrated: bool,
    meta: Mapping[str, object],
    training_drfs: Sequence[float],
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
        "training_drfs": list(training_drfs),
        "n_unestimated": result.drf_unestimated,
    }
    json_path, markdown = write_drf_report(
        out, result.drf_records, training_drfs, weights.name, meta
    )
    print(markdown)
    print(f"wrote {json_path} and appended the DRF estimate table to {out / 'results.md'}")


def _targets(
    out: Path,
    result: EvalResult,
    names: Sequence[str],
    training_drfs: Sequence[float],
    target_names: TargetNames,
) -> list[TargetCheck]:
    """The target checks of the evaluation, added to ``results.json`` and ``results.md``."""
    document = json.loads((out / "results.json").read_text())
    checks = check_targets(
        document["tables"],
        training_drfs,
        target_names,
        full_dose=full_dose_input(result.rows, result.drf_records, names),
        drf_overall=overall_accuracy(result.drf_records) if result.drf_records else None,
    )
    document["targets"] = [c.to_json_dict() for c in checks]
    (out / "results.json").write_text(json.dumps(document, indent=1, allow_nan=False))
    with (out / "results.md").open("a") as md:
        md.write("\n" + "\n".join(targets_markdown(checks)) + "\n")
    return checks


def _matched(names: Sequence[str] | None, methods: Sequence[Method], unipet: str) -> Matched:
    """The networks that get a matched Gaussian (see ``--matched-gaussian``).

    Raises:
        ValueError: a named method that is no network of the evaluation.
    """
    networks = {m.name for m in methods if m.network}
    if names is None:
        return frozenset({unipet}) if unipet in networks else None
    unknown = sorted(set(names) - networks)
    if unknown:
        raise ValueError(f"--matched-gaussian names {unknown}, which are no network methods")
    return frozenset(names)


def _run(
    args: argparse.Namespace, split: EvalSplit, drfs: Sequence[float]
) -> tuple[EvalResult, bool, dict[str, str]]:
    """The evaluation itself, in one process or spread over ``--jobs``; whether the DRF
    estimator carries a calibration; and what made each method's rows.

    Raises:
        ValueError: a test phantom was seen by a method, a cached file lacks a DRF, or the
            ``--reuse`` file cannot be reused.
        model.errors.ModelError: a network or estimator cannot be loaded.
    """
    methods = parse_methods(args.methods)
    size = args.size or split.size or "small"
    match = _matched(args.matched_gaussian, methods, args.unipet_name)
    identities = method_identities(methods, match)
    reuse = None
    if args.reuse is not None:
        reuse = load_reusable(args.reuse, identities, REFERENCE_NOTE)
        print(f"reusing {len(reuse)} rows of {', '.join(map(str, args.reuse))}")
    estimator = None
    if args.drf_estimator is not None:
        estimator = load_drf_estimator(args.drf_estimator, args.threads)
        calibration = sorted(card_train_seeds(args.drf_estimator))
        split = replace(split, seen_seeds={**split.seen_seeds, "DRF calibration": calibration})
    calibrated = estimator is not None
    if args.jobs > 1:
        result = run_evaluation_parallel(
            split,
            size,
            drfs,
            args.methods,
            args.out,
            args.jobs,
            args.n_test,
            args.drf_estimator if estimator is not None else None,
            args.threads,
            match,
            reuse,
        )
        return result, calibrated, identities
    result = run_evaluation(
        split, size, drfs, methods, args.out, args.n_test, estimator, match, reuse
    )
    return result, calibrated, identities


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation and print its tables; returns the exit status."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        split = resolve_splits(args.dataset, args.size, args.cached, args.split)
        drfs = _drfs(args.drfs, split)
        training_drfs = _training_drfs(args.training_drfs, args.methods)
        result, calibrated, identities = _run(args, split, drfs)
    except (ValueError, FileNotFoundError, ModelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows, figures = result.rows, result.figures
    seeds = sorted({r.seed for r in rows})
    meta: Mapping[str, object] = {
        "size": split.size or args.size or "small",
        "test_seeds": seeds,
        "drfs": drfs,
    }
    names = list(dict.fromkeys(r.method for r in rows))
    json_path, md_path, markdown = write_reports(
        args.out,
        rows,
        drfs,
        names,
        training_drfs,
        {**meta, "datasets": list(args.dataset), "methods": identities},
        result.drf_records,
    )
    print(markdown)
    if args.drf_estimator is not None:
        _report_drf(result, args.out, args.drf_estimator, calibrated, meta, training_drfs)
    target_names = TargetNames(unipet=args.unipet_name, vanilla=args.vanilla_name)
    print(
        "\n".join(targets_markdown(_targets(args.out, result, names, training_drfs, target_names)))
    )
    compared = ", ".join(n for n in names if n != LOW_DOSE)
    print(
        f"wrote {json_path}, {md_path} and {len(figures)} figures "
        f"({time.perf_counter() - start:.0f} s; rows: {compared})"
    )
    for path in figures:
        print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
