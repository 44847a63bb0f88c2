"""Fixtures of the model tests: tiny cached datasets as ``model.simulate.build_dataset`` writes
them, with a noise-free reconstruction and one folder of held-out scanner profiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.baselines import gaussian_postfilter
from model.simulate.dataset import build_dataset

CACHED_DRFS = (1.0, 20.0)


def _add_noise_free(folder: Path) -> None:
    """Store a noise-free image in every file (a smoothed truth stands in for the OSEM of
    noiseless data: the evaluation only needs a reference without noise)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["phantoms"]:
        path = folder / entry["file"]
        with np.load(path) as npz:
            arrays = {name: npz[name] for name in npz.files}
        spacing = tuple(float(s) for s in entry["spacing_mm"])
        arrays["noise_free_bqml"] = gaussian_postfilter(arrays["truth_bqml"], spacing, 10.0)
        np.savez(path, **arrays)


def _cached_dataset(folder: Path, seeds: list[int], held_out: bool) -> Path:
    """A tiny test-only dataset; ``held_out`` marks its scanners as unseen in training."""
    list(build_dataset(folder, {"test": seeds}, list(CACHED_DRFS), size="tiny"))
    _add_noise_free(folder)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["held_out_scanners"] = held_out
    manifest_path.write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="session")
def cached_datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two tiny cached test sets: trained scanners (seeds 95, 96) and unseen ones (97)."""
    root = tmp_path_factory.mktemp("cached")
    return (
        _cached_dataset(root / "ds_trained", [95, 96], held_out=False),
        _cached_dataset(root / "ds_unseen", [97], held_out=True),
    )
