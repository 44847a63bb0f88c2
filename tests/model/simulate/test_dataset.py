"""Dataset splits and cache: no phantom in two splits, files round-trip, cache reused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.simulate.build_dataset import main
from model.simulate.dataset import (
    build_dataset,
    default_splits,
    load_study,
    parse_split_spec,
    validate_splits,
)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 57, 100])
def test_default_splits_are_disjoint_and_complete(n: int) -> None:
    splits = default_splits(n, base_seed=1000)
    seeds = [s for v in splits.values() for s in v]
    assert len(seeds) == len(set(seeds)) == n
    if n >= 3:
        assert splits["validation"] and splits["test"]


def test_split_spec_parses_ranges() -> None:
    splits = parse_split_spec("train:0-3,validation:4,test:5-6")
    assert splits == {"train": [0, 1, 2, 3], "validation": [4], "test": [5, 6]}


@pytest.mark.parametrize(
    "spec", ["train:0-5,test:5", "train:0-2,train:2", "train:3-1", "holdout:1", "train=1"]
)
def test_bad_split_specs_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_split_spec(spec)


def test_overlapping_splits_are_refused() -> None:
    with pytest.raises(ValueError, match="seed 2"):
        validate_splits({"train": [1, 2], "test": [2]})


def test_build_writes_manifest_and_round_trips(tmp_path: Path) -> None:
    splits = {"train": [0, 1], "validation": [2], "test": [3]}
    entries = list(build_dataset(tmp_path, splits, [4.0, 20.0], size="tiny"))
    assert [e["seed"] for e in entries] == [0, 1, 2, 3]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    by_split: dict[str, set[int]] = {}
    for entry in manifest["phantoms"]:
        by_split.setdefault(entry["split"], set()).add(entry["seed"])
    assert by_split == {k: set(v) for k, v in splits.items()}
    study = load_study(tmp_path / entries[2]["file"])  # type: ignore[operator]
    assert study.seed == 2
    assert list(study.low_dose_bqml) == [4.0, 20.0]
    assert study.low_dose_bqml[20.0].dtype == np.float32
    again = list(build_dataset(tmp_path, splits, [4.0, 20.0], size="tiny"))
    assert all(e["cached"] for e in again)
    other_drfs = list(build_dataset(tmp_path, {"train": [0]}, [10.0], size="tiny"))
    assert not other_drfs[0]["cached"]


def test_cli_builds_tiny_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["--out", str(tmp_path), "--n", "3", "--size", "tiny", "--drfs", "4", "20"])
    assert status == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert len(manifest["phantoms"]) == 3
    assert "3 phantoms" in capsys.readouterr().out


def test_cli_refuses_overlapping_seeds(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--split-seeds", "train:0-2,test:2"]) == 2
    assert not (tmp_path / "manifest.json").exists()
