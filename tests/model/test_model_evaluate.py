"""Evaluation: metric sanity on known cases, split safety, and the CLI end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.evaluate import EvalSplit, check_unseen, resolve_split, run_evaluation
from model.evaluation.methods import LOW_DOSE, Method, parse_method, parse_methods
from model.evaluation.metrics import EvalCase, case_metrics, psnr_suv, ssim_suv
from model.evaluation.tuning import VALIDATION_SEEDS
from model.networks import NetworkConfig, UniPETNet
from model.simulate import simulate_study
from model.weights_io import save_weights

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def case() -> EvalCase:
    """A tiny phantom with lesions, as the metrics see it."""
    return EvalCase.from_study(simulate_study(seed=7, drfs=[20.0], size="tiny"))


def test_identical_volumes_score_perfectly(case: EvalCase) -> None:
    m = case_metrics(case.full_dose_bqml.copy(), case)
    assert m.psnr_db == math.inf
    assert m.ssim == pytest.approx(1.0)
    assert m.nrmse == 0.0
    assert m.liver_bias_pct == pytest.approx(0.0, abs=1e-9)
    assert m.liver_cov_ratio == pytest.approx(1.0)
    assert m.n_lesions > 0
    assert m.lesion_max_bias_pct == pytest.approx(0.0, abs=1e-9)
    assert m.lesion_mean_bias_pct == pytest.approx(0.0, abs=1e-9)


def test_a_known_scale_gives_the_known_bias(case: EvalCase) -> None:
    m = case_metrics(case.full_dose_bqml * np.float32(1.1), case)
    assert m.liver_bias_pct == pytest.approx(10.0, abs=1e-3)
    assert m.lesion_max_bias_pct == pytest.approx(10.0, abs=1e-3)
    assert m.lesion_mean_bias_pct == pytest.approx(10.0, abs=1e-3)
    assert m.liver_cov_ratio == pytest.approx(1.0, abs=1e-5)
    assert m.ssim < 1.0


def test_psnr_of_a_known_offset() -> None:
    reference = np.full((8, 8, 8), 3.0, dtype=np.float32)
    # MSE 0.04 on a data range of 20: 10 log10(400 / 0.04) = 40 dB.
    assert psnr_suv(reference + np.float32(0.2), reference) == pytest.approx(40.0, abs=1e-3)
    assert ssim_suv(reference, reference) == pytest.approx(1.0)


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


def test_methods_start_with_the_low_dose_row() -> None:
    names = [m.name for m in parse_methods(["gaussian", "nlm", LOW_DOSE])]
    assert names == [LOW_DOSE, "gaussian", "nlm"]


def test_cli_writes_tables_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "model.evaluate", "--dataset", "train:0-3,test:91",
           "--size", "tiny", "--methods", "gaussian", "tuned_gaussian", "nlm",
           "--drfs", "20", "7", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "unseen DRF" in done.stdout
    document = json.loads((out / "results.json").read_text())
    assert document["test_seeds"] == [91]
    rows = document["tables"]["20"]
    assert [r["method"] for r in rows] == [LOW_DOSE, "gaussian", "tuned_gaussian", "nlm"]
    low, nlm = rows[0]["means"], rows[3]["means"]
    assert nlm["psnr_db"] > low["psnr_db"]
    assert nlm["liver_cov_ratio"] < low["liver_cov_ratio"]
    assert "| nlm |" in (out / "results.md").read_text()
    for drf in ("20", "7"):
        assert (out / f"mip_drf{drf}.png").stat().st_size > 1000


def test_cli_refuses_a_training_seed(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "model.evaluate", "--dataset", "2000",
           "--size", "tiny", "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "seen before evaluation" in done.stderr


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


def test_parallel_evaluation_gives_the_sequential_rows(tmp_path: Path) -> None:
    from model.evaluate import run_evaluation_parallel

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
