"""Which phantoms an evaluation scores, and the refusal to score any phantom a method has seen.

``--dataset`` of ``model.evaluate`` is a dataset folder (its manifest's test split and size)
or a seed spec: ``train:0-79,validation:80-89,test:90-99`` or bare test seeds (``90-92``,
``90,95``); it may be given several times. The other splits are kept as seen seeds, because
a score on a phantom a network trained on says nothing about phantoms it has not seen.

Phantoms of the fixed sizes are simulated afresh from their seeds (bit-identical to the
cache, and at any DRF). Size ``clinical`` takes up to minutes per phantom, so its test
phantoms are read from the folder's files (``CACHED_SIZES``; ``cached=True`` does the same for
any size), at the DRFs stored there. Each phantom keeps the folder's name and whether its
scanner profile was held out of training (the manifest's ``held_out_scanners``), so tables
can be split into trained and unseen scanners.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from model.simulate.dataset import parse_split_spec

__all__ = [
    "CACHED_SIZES",
    "DEFAULT_SIZE",
    "EvalPhantom",
    "EvalSplit",
    "check_unseen",
    "resolve_split",
    "resolve_splits",
]

CACHED_SIZES = frozenset({"clinical"})  # too slow to simulate again at evaluation time
DEFAULT_SIZE = "small"


@dataclass(frozen=True)
class EvalPhantom:
    """One test phantom: simulated afresh from its seed, or read from a cached file."""

    seed: int
    size: str
    path: Path | None = None  # a dataset file; None: simulate from the seed
    dataset: str | None = None  # the dataset folder's name
    held_out_scanner: bool = False  # its scanner profile was held out of training


@dataclass(frozen=True)
class EvalSplit:
    """Test seeds, the seeds they must not overlap (by where they come from), and the size.

    ``phantoms`` says how to get each test phantom (empty: simulate ``test_seeds`` at the
    size the runner is given); ``drfs`` are the DRFs every cached file holds (None when no
    phantom is read from a file).
    """

    test_seeds: list[int]
    seen_seeds: dict[str, list[int]]
    size: str | None
    phantoms: tuple[EvalPhantom, ...] = ()
    drfs: tuple[float, ...] | None = None


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


def _cached_phantoms(
    folder: Path, manifest: Mapping[str, object], scored: str
) -> tuple[EvalPhantom, ...]:
    """The phantoms of the ``scored`` split of a dataset folder, read from its files.

    Raises:
        ValueError: the manifest lists no phantom files.
    """
    entries = manifest.get("phantoms")
    if not isinstance(entries, list):
        raise ValueError(f"{folder}/manifest.json lists no phantom files")
    held_out = bool(manifest.get("held_out_scanners", False))
    return tuple(
        EvalPhantom(
            seed=int(entry["seed"]),
            size=str(entry.get("size", manifest["size"])),
            path=folder / str(entry["file"]),
            dataset=folder.name,
            held_out_scanner=bool(entry.get("held_out_scanners", held_out)),
        )
        for entry in entries
        if isinstance(entry, dict) and entry.get("split") == scored
    )


def resolve_split(
    dataset: str, size: str | None = None, cached: bool = False, scored: str = "test"
) -> EvalSplit:
    """Test seeds, seen seeds and phantoms from a dataset folder or a seed spec.

    Args:
        dataset: a dataset folder or a seed spec (module docstring).
        size: size of simulated phantoms (default: the folder's, else ``DEFAULT_SIZE``).
        cached: read a folder's test phantoms from its files whatever their size.
        scored: the split whose phantoms are scored: ``test``, or ``validation`` to choose
            between training recipes without looking at the test phantoms (every other
            split still counts as seen).

    Raises:
        ValueError: the spec is malformed or names no test seed.
        FileNotFoundError: a folder without ``manifest.json``.
    """
    path = Path(dataset)
    drfs: tuple[float, ...] | None = None
    if path.is_dir():
        manifest = json.loads((path / "manifest.json").read_text())
        splits = {k: [int(s) for s in v] for k, v in manifest["splits"].items()}
        folder_size = str(manifest["size"])
        if cached or folder_size in CACHED_SIZES:
            phantoms = _cached_phantoms(path, manifest, scored)
            drfs = tuple(float(d) for d in manifest["drfs"])
            size = folder_size
        else:
            size = size or folder_size
            phantoms = tuple(
                EvalPhantom(s, size, dataset=path.name) for s in splits.get(scored, [])
            )
    else:
        if ":" in dataset:
            splits = parse_split_spec(dataset)
        else:
            splits = {"train": [], "validation": [], "test": _bare_seeds(dataset)}
        size = size or DEFAULT_SIZE
        phantoms = tuple(EvalPhantom(s, size) for s in splits.get(scored, []))
    test = splits.get(scored, [])
    if not test:
        raise ValueError(f"{dataset!r} has no {scored} seeds")
    seen = {name: seeds for name, seeds in splits.items() if name != scored}
    return EvalSplit(list(test), seen, size, phantoms, drfs)


def _merged_drfs(splits: Sequence[EvalSplit]) -> tuple[float, ...] | None:
    """DRFs held by every cached folder, in the first one's order; None if none is cached."""
    stored = [s.drfs for s in splits if s.drfs is not None]
    if not stored:
        return None
    return tuple(d for d in stored[0] if all(d in other for other in stored[1:]))


def resolve_splits(
    datasets: Sequence[str], size: str | None = None, cached: bool = False, scored: str = "test"
) -> EvalSplit:
    """One split from several datasets (:func:`resolve_split` each), their phantoms in order.

    Raises:
        ValueError: no dataset, a malformed one, or a seed in two datasets (rows are keyed
            by seed, so the tables could not tell them apart).
    """
    if not datasets:
        raise ValueError("no dataset given")
    parts = [resolve_split(d, size, cached, scored) for d in datasets]
    if len(parts) == 1:
        return parts[0]
    test = [seed for part in parts for seed in part.test_seeds]
    repeated = sorted({seed for seed in test if test.count(seed) > 1})
    if repeated:
        raise ValueError(f"test seeds {repeated} are in more than one dataset")
    seen: dict[str, list[int]] = {}
    for dataset, part in zip(datasets, parts, strict=True):
        for name, seeds in part.seen_seeds.items():
            seen[f"{name} of {dataset}"] = seeds
    sizes = list(dict.fromkeys(p.size for p in parts if p.size))
    phantoms = tuple(p for part in parts for p in part.phantoms)
    return EvalSplit(test, seen, "+".join(sizes) or None, phantoms, _merged_drfs(parts))


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
