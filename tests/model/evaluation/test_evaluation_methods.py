"""Evaluation methods: the low-dose row first, and a network as a method with its seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model.evaluation.methods import LOW_DOSE, parse_method, parse_methods
from model.evaluation.metrics import EvalCase
from model.networks import NetworkConfig, UniPETNet
from model.simulate import simulate_study
from model.weights_io import save_weights


@pytest.fixture(scope="module")
def case() -> EvalCase:
    """A tiny phantom with lesions, as the metrics see it."""
    return EvalCase.from_study(simulate_study(seed=7, drfs=[20.0], size="tiny"))


def test_methods_start_with_the_low_dose_row() -> None:
    names = [m.name for m in parse_methods(["gaussian", "nlm", LOW_DOSE])]
    assert names == [LOW_DOSE, "gaussian", "nlm"]


def test_network_adapter_denoises_and_carries_its_training_seeds(
    case: EvalCase, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    net = UniPETNet(NetworkConfig(widths=(8, 8, 8), code_dim=4, style_width=4))
    weights = tmp_path / "net.safetensors"
    save_weights(net, weights, version="0")
    (tmp_path / "net.json").write_text(json.dumps({"data": {"train_seeds": [1, 2]}}))
    method = parse_method(f"tiny={weights}")
    assert method.name == "tiny"
    assert method.train_seeds == frozenset({1, 2})
    low = case.full_dose_bqml
    out = method.for_drf(20.0)(low, case.spacing_mm, case.suv_per_bqml)
    assert out.shape == low.shape
    assert np.isfinite(out).all()
