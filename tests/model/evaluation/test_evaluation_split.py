"""Evaluation split: test seeds from a dataset folder or a spec, and seen-seed refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.evaluation.split import check_unseen, resolve_split


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
