"""Evaluation runners: no seen seed is ever scored; processes give the one-process rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.evaluation.methods import LOW_DOSE, Method, parse_methods
from model.evaluation.parallel import run_evaluation_parallel
from model.evaluation.runner import run_evaluation
from model.evaluation.split import EvalSplit
from model.evaluation.tuning import VALIDATION_SEEDS
from model.networks import NetworkConfig, UniPETNet
from model.weights_io import save_weights


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
    assert [r.metrics for r in parallel.rows] == [r.metrics for r in sequential.rows]
    assert {r.method for r in parallel.rows} == {LOW_DOSE, "gaussian", "net"}
    assert [p.name for p in parallel.figures] == ["mip_drf20.png"]
