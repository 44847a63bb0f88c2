"""Command line: build a cache of simulated phantoms for training and evaluation.

    python -m model.simulate.build_dataset --out DIR --n 100 --size small \\
        --drfs 4 10 20 50 100 [--split-seeds train:0-79,validation:80-89,test:90-99]
    python -m model.simulate.build_dataset --out DIR --size clinical --noise-free \\
        --drfs 1 2 4 10 20 50 100 --split-seeds train:5000-5059 [--held-out-scanners]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from model.simulate.dataset import build_dataset, default_splits, parse_split_spec
from model.simulate.geometry import SIZES
from model.simulate.tracers import TRACERS

TRAINING_DRFS = (4.0, 10.0, 20.0, 50.0, 100.0)


def _parser() -> argparse.ArgumentParser:
    """Arguments of the dataset builder."""
    p = argparse.ArgumentParser(
        prog="python -m model.simulate.build_dataset",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="cache folder (created)")
    p.add_argument("--n", type=int, default=10, help="phantoms when --split-seeds is not given")
    p.add_argument("--size", choices=[*sorted(SIZES), "clinical"], default="small")
    p.add_argument("--drfs", type=float, nargs="+", default=list(TRAINING_DRFS))
    p.add_argument("--tracer", choices=sorted(TRACERS), default="fdg")
    p.add_argument("--base-seed", type=int, default=0, help="first seed of the default splits")
    p.add_argument(
        "--split-seeds",
        default=None,
        help="explicit disjoint seeds, e.g. 'train:0-79,validation:80-89,test:90-99'",
    )
    p.add_argument("--force", action="store_true", help="redraw files already in the cache")
    p.add_argument(
        "--held-out-scanners",
        action="store_true",
        help="size clinical: draw from the scanner profiles held out of training",
    )
    p.add_argument(
        "--noise-free", action="store_true", help="also store the noiseless reconstruction"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Build the dataset and print one line per phantom; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        splits = (
            parse_split_spec(args.split_seeds)
            if args.split_seeds
            else default_splits(args.n, args.base_seed)
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    total = sum(len(v) for v in splits.values())
    entries = build_dataset(
        args.out,
        splits,
        args.drfs,
        args.size,
        args.tracer,
        args.force,
        held_out_scanners=args.held_out_scanners,
        noise_free=args.noise_free,
    )
    for i, entry in enumerate(entries, start=1):
        state = "cached" if entry["cached"] else "built"
        print(
            f"[{i}/{total}] {entry['split']:<10} seed {entry['seed']:>6} {state:<6} "
            f"{entry['file']} ({time.perf_counter() - start:.1f} s)"
        )
    print(
        f"wrote {args.out / 'manifest.json'}: {total} phantoms in "
        f"{time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
