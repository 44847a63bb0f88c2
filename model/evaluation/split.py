"""Which phantoms an evaluation scores, and the refusal to score any phantom a method has seen.

``--dataset`` of ``model.evaluate`` is a dataset folder (its manifest's test split and size)
or a seed spec: ``train:0-79,validation:80-89,test:90-99`` or bare test seeds (``90-92``,
``90,95``). The other splits are kept as seen seeds, because a score on a phantom a network
trained on says nothing about phantoms it has not seen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from model.simulate.dataset import parse_split_spec

__all__ = ["EvalSplit", "check_unseen", "resolve_split"]


@dataclass(frozen=True)
class EvalSplit:
    """Test seeds, the seeds they must not overlap (by where they come from), and the size."""

    test_seeds: list[int]
    seen_seeds: dict[str, list[int]]
    size: str | None


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
