"""Evaluation runners: no seen seed is ever scored; processes give the one-process rows;
cached test phantoms are read from their dataset files, labelled by dataset and scanner."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from model.evaluation.methods import (
    FULL_DOSE,
    LOW_DOSE,
    NOISE_FREE,
    Method,
    matched_name,
    parse_methods,
)
from model.evaluation.parallel import run_evaluation_parallel
from model.evaluation.runner import EvalResult, load_phantom, run_evaluation
from model.evaluation.split import EvalSplit, resolve_splits
from model.evaluation.tuning import VALIDATION_SEEDS
from model.networks import NetworkConfig, UniPETNet
from model.weights_io import save_weights


def _figures(result: EvalResult) -> str:
    """Every row's figures and lesions as text (NaN compares equal to NaN here)."""
    return repr([(r.metrics, r.lesions, r.fwhm_mm) for r in result.rows])


@pytest.mark.parametrize(
    ("split", "methods"),
    [
        (EvalSplit([1], {"train": [1]}, None), parse_methods([])),
        (EvalSplit([VALIDATION_SEEDS[0]], {}, None), parse_methods([])),
        (
            EvalSplit([42], {}, None),
            [Method("net", lambda drf: lambda v, s, f: v, frozenset({42}))],
        ),
    ],
    ids=["dataset-train", "baseline-tuning", "network-card"],
)
def test_evaluation_never_scores_a_seen_seed(
    split: EvalSplit, methods: list[Method], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="seen before evaluation"):
        run_evaluation(split, "tiny", [20.0], methods, tmp_path)


def test_parallel_evaluation_gives_the_sequential_rows(tmp_path: Path) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "net.safetensors"
    save_weights(
        UniPETNet(NetworkConfig(widths=(4, 8, 8), code_dim=4, style_width=4)), weights, "t"
    )
    specs = ["gaussian", f"net={weights}"]
    split = EvalSplit(test_seeds=[95, 96], seen_seeds={}, size="tiny")
    sequential = run_evaluation(split, "tiny", [20.0], parse_methods(specs), tmp_path / "a")
    parallel = run_evaluation_parallel(split, "tiny", [20.0], specs, tmp_path / "b", jobs=2)
    assert [(r.seed, r.method) for r in parallel.rows] == [
        (r.seed, r.method) for r in sequential.rows
    ]
    assert _figures(parallel) == _figures(sequential)
    assert {r.method for r in parallel.rows} == {
        LOW_DOSE,
        "gaussian",
        "net",
        matched_name("net"),
        FULL_DOSE,
        NOISE_FREE,
    }
    assert [p.name for p in parallel.figures] == ["mip_drf20.png"]


def test_cached_test_phantoms_are_read_from_their_files(
    cached_datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    trained, unseen = cached_datasets
    split = resolve_splits([str(trained), str(unseen)], cached=True)
    assert split.drfs == (1.0, 20.0)
    # Double one stored image: a row that reflects it was read, not simulated again.
    (changed,) = [p for p in split.phantoms if p.seed == 97]
    assert changed.path is not None
    with np.load(changed.path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["low_dose_drf20"] = arrays["low_dose_drf20"] * np.float32(2.0)
    doubled = tmp_path / "doubled.npz"
    np.savez(doubled, **arrays)
    phantoms = tuple(replace(p, path=doubled) if p.seed == 97 else p for p in split.phantoms)
    split = replace(split, phantoms=phantoms)

    result = run_evaluation(split, "tiny", [1.0, 20.0], parse_methods(["gaussian"]), tmp_path)

    rows = {(r.seed, r.drf, r.method): r for r in result.rows}
    assert {m for s, d, m in rows if (s, d) == (95, 20.0)} == {
        LOW_DOSE,
        "gaussian",
        FULL_DOSE,
        NOISE_FREE,
    }
    assert rows[(97, 20.0, LOW_DOSE)].metrics.liver_bias_pct > 80.0
    assert rows[(97, 1.0, LOW_DOSE)].metrics.liver_bias_pct == pytest.approx(0.0, abs=1e-6)
    labels = {(r.seed, r.dataset, r.held_out_scanner) for r in result.rows}
    assert labels == {(95, "ds_trained", False), (96, "ds_trained", False), (97, "ds_unseen", True)}
    assert all(r.scanner and r.scanner.startswith("sim-") for r in result.rows)
    noise_free = rows[(95, 20.0, NOISE_FREE)]
    assert noise_free.lesions
    assert all(lesion.peak_bias_nf_pct == 0.0 for lesion in noise_free.lesions)
    full = rows[(95, 20.0, FULL_DOSE)]
    assert all(math.isfinite(lesion.peak_bias_nf_pct) for lesion in full.lesions)


def test_a_drf_a_cached_file_lacks_is_refused(cached_datasets: tuple[Path, Path]) -> None:
    phantom = resolve_splits([str(cached_datasets[0])], cached=True).phantoms[0]
    with pytest.raises(ValueError, match="no image at DRF"):
        load_phantom(phantom, [20.0, 7.0])
