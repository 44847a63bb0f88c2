"""Fixtures of the model tests: tiny cached datasets as ``model.simulate.build_dataset`` writes
them, with the noise-free reconstruction, and one folder marked as held-out scanners."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.simulate.dataset import build_dataset

CACHED_DRFS = (1.0, 20.0)


def _cached_dataset(folder: Path, seeds: list[int], held_out: bool) -> Path:
    """A tiny test-only dataset; ``held_out`` marks its scanners as unseen in training (the
    fixed sizes have no held-out profiles, so the manifest is marked by hand)."""
    list(build_dataset(folder, {"test": seeds}, list(CACHED_DRFS), size="tiny", noise_free=True))
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["held_out_scanners"] = held_out
    for entry in manifest["phantoms"]:
        entry["held_out_scanners"] = held_out
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
