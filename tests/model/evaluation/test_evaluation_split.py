"""Evaluation split: test seeds from dataset folders or specs, cached phantoms, and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.evaluation.split import check_unseen, resolve_split, resolve_splits


def test_resolve_split_from_a_dataset_folder(tmp_path: Path) -> None:
    splits = {"train": [0, 1, 2], "validation": [3], "test": [4, 5]}
    (tmp_path / "manifest.json").write_text(json.dumps({"size": "tiny", "splits": splits}))
    split = resolve_split(str(tmp_path))
    assert split.test_seeds == [4, 5]
    assert split.size == "tiny"
    assert not set(split.test_seeds) & set(split.seen_seeds["train"])


def test_resolve_split_from_specs() -> None:
    assert resolve_split("train:0-7,test:8-9").test_seeds == [8, 9]
    assert resolve_split("90-92,95").test_seeds == [90, 91, 92, 95]


def test_a_split_without_test_seeds_is_refused() -> None:
    with pytest.raises(ValueError, match="no test seeds"):
        resolve_split("train:0-7")


def test_check_unseen_names_the_clash() -> None:
    with pytest.raises(ValueError, match="train"):
        check_unseen([3, 4], {"train": [0, 1, 2, 3]})


def _folder(path: Path, size: str, test: list[int], drfs: list[float], held_out: bool) -> str:
    """A dataset folder with only its manifest (enough to resolve a split)."""
    path.mkdir()
    phantoms = [
        {"split": "test", "file": f"test/seed{s:06d}.npz", "seed": s, "size": size} for s in test
    ]
    manifest = {"size": size, "drfs": drfs, "splits": {"train": [0], "test": test},
                "phantoms": phantoms, "held_out_scanners": held_out}  # fmt: skip
    (path / "manifest.json").write_text(json.dumps(manifest))
    return str(path)


def test_clinical_folders_are_read_from_their_files_and_pooled(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", "clinical", [10, 11], [1.0, 4.0, 20.0], held_out=False)
    b = _folder(tmp_path / "b", "clinical", [20], [1.0, 2.0, 20.0], held_out=True)
    split = resolve_splits([a, b])
    assert split.test_seeds == [10, 11, 20]
    assert split.drfs == (1.0, 20.0)
    assert split.size == "clinical"
    assert [(p.seed, p.dataset, p.held_out_scanner) for p in split.phantoms] == [
        (10, "a", False),
        (11, "a", False),
        (20, "b", True),
    ]
    assert split.phantoms[2].path == tmp_path / "b" / "test" / "seed000020.npz"
    assert set(split.seen_seeds) == {f"train of {a}", f"train of {b}"}


def test_fixed_size_folders_are_simulated_unless_cached_is_asked(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "s", "tiny", [5], [4.0, 20.0], held_out=False)
    simulated = resolve_split(folder)
    assert simulated.drfs is None
    assert [(p.seed, p.size, p.path) for p in simulated.phantoms] == [(5, "tiny", None)]
    cached = resolve_split(folder, cached=True)
    assert cached.drfs == (4.0, 20.0)
    assert cached.phantoms[0].path is not None


def test_a_seed_in_two_datasets_is_refused(tmp_path: Path) -> None:
    a = _folder(tmp_path / "a", "clinical", [10], [1.0], held_out=False)
    with pytest.raises(ValueError, match=r"\[10\] are in more than one dataset"):
        resolve_splits([a, "10"])


def test_the_validation_split_can_be_scored_and_the_test_split_then_counts_as_seen(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    phantoms = [
        {"split": split, "file": f"{split}/seed{s:06d}.npz", "seed": s, "size": "clinical"}
        for split, seeds in (("train", [0, 1]), ("validation", [2, 3]), ("test", [4]))
        for s in seeds
    ]
    manifest = {"size": "clinical", "drfs": [1.0, 20.0], "phantoms": phantoms,
                "splits": {"train": [0, 1], "validation": [2, 3], "test": [4]}}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    split = resolve_split(str(folder), scored="validation")
    assert split.test_seeds == [2, 3]
    assert [p.path for p in split.phantoms] == [
        folder / "validation" / "seed000002.npz",
        folder / "validation" / "seed000003.npz",
    ]
    assert split.seen_seeds == {"train": [0, 1], "test": [4]}
    with pytest.raises(ValueError, match="no validation seeds"):
        resolve_split("train:0-7,test:8", scored="validation")
