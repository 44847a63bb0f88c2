"""Convergence: validation loss on fixed patches, early stop, best weights, exact resume."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from training_samples import small_config

from model.card import ModelCard, render_markdown
from model.networks import UniPETNet
from model.patches import SuvStudy
from model.simulate.dataset import build_dataset
from model.training.config import TrainConfig
from model.training.run import train
from model.training.validation import ConvergenceTracker, ValidationSet
from model.weights_io import load_network

DRFS = (4.0, 20.0)


def _study(seed: int) -> SuvStudy:
    rng = np.random.default_rng(seed)
    full = np.zeros((8, 40, 40), dtype=np.float32)
    full[:, 6:34, 6:34] = 1.5
    low = {d: (full + rng.normal(0, 0.1 * np.sqrt(d), full.shape)).astype(np.float32) for d in DRFS}
    return SuvStudy(seed, (3.0, 3.0, 3.0), 1e-4, full, low)


def _config(tmp_path: Path, **overrides: object) -> TrainConfig:
    validating = {
        "stage1_steps": 12,
        "stage2_steps": 0,
        "validate_every": 2,
        "validation_patches": 40,
        "checkpoint_every": 2,
    }
    return small_config(tmp_path, DRFS, **{**validating, **overrides})


def test_tracker_stops_after_patience_validations_without_improvement() -> None:
    tracker = ConvergenceTracker(patience=2, min_delta=0.01)
    assert not tracker.update(1, 1.0)
    assert not tracker.update(2, 0.9)  # improved: best at step 2
    assert tracker.is_best(2)
    assert not tracker.update(3, 0.895)  # under 1 % better: stale 1
    assert tracker.update(4, 0.95)  # stale 2: converged
    assert (tracker.best, tracker.best_step) == (0.9, 2)


def test_tracker_without_patience_never_stops() -> None:
    tracker = ConvergenceTracker(patience=0, min_delta=0.01)
    assert not any(tracker.update(step, 1.0) for step in range(20))


def test_tracker_state_round_trips() -> None:
    tracker = ConvergenceTracker(3, 0.01)
    tracker.update(5, 0.4)
    tracker.update(6, 0.5)
    again = ConvergenceTracker(3, 0.01)
    again.restore(json.loads(json.dumps(tracker.to_json())))
    assert again == tracker


def test_validation_set_is_fixed_and_reports_each_drf() -> None:
    studies = [_study(0), _study(1)]
    first = ValidationSet.draw(studies, DRFS, 5, 24, 40, seed=3, lesion_fraction=0.0)
    again = ValidationSet.draw(studies, DRFS, 5, 24, 40, seed=3, lesion_fraction=0.0)
    np.testing.assert_array_equal(first.chunks[0].low_dose, again.chunks[0].low_dose)
    assert sum(len(c.drf) for c in first.chunks) >= 40
    torch.manual_seed(0)
    net = _config(Path("/nonexistent")).network()
    figures = first.loss(UniPETNet(net), torch.device("cpu"))
    assert set(figures) == {
        "val_l1",
        "val_lesion",
        "val_objective",
        "val_l1_drf4",
        "val_l1_drf20",
    }
    assert figures["val_lesion"] == 0.0  # these phantoms have no lesions
    # an untrained residual network is the identity: its loss is the input's noise
    assert figures["val_l1_drf20"] > figures["val_l1_drf4"] > 0


def test_validation_objective_weighs_the_lesion_error_the_way_training_does() -> None:
    study = _study(0)
    labels = np.zeros(study.full_dose_suv.shape, dtype=np.int16)
    labels[:, 18:22, 18:22] = 1  # a small lesion, 4 x 4 pixels on every slice
    hot = study.full_dose_suv.copy()
    hot[labels > 0] = 6.0
    low = {d: v + (hot - study.full_dose_suv) for d, v in study.low_dose_suv.items()}
    lesioned = dataclasses.replace(study, full_dose_suv=hot, low_dose_suv=low, lesion_labels=labels)
    patches = ValidationSet.draw([lesioned], DRFS, 5, 24, 32, seed=1, lesion_fraction=1.0)
    torch.manual_seed(0)
    net = UniPETNet(_config(Path("/nonexistent")).network())
    figures = patches.loss(net, torch.device("cpu"), lesion_weight=0.3)
    # The same figure by hand: the untrained network is the identity, so its error is the
    # input's noise, and the lesion L1 is the mean of it over every lesion voxel.
    chunk = patches.chunks[0]
    noise = np.abs(chunk.low_dose[:, 2] - chunk.full_dose[:, 2])
    assert chunk.lesion_mask is not None
    mask = chunk.lesion_mask[:, 0] > 0
    assert mask.any()
    assert figures["val_lesion"] == pytest.approx(noise[mask].mean(), rel=1e-4)
    assert figures["val_objective"] == pytest.approx(
        figures["val_l1"] + 0.3 * figures["val_lesion"]
    )


def test_an_unknown_validation_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="validation_metric"):
        TrainConfig.from_json_dict({"validation_metric": "psnr"})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ds")
    list(build_dataset(out, {"train": [3, 4], "validation": [5]}, DRFS, size="tiny"))
    return out


def test_run_validates_and_exports_its_best_weights(tmp_path: Path, dataset: Path) -> None:
    config = _config(tmp_path, dataset_dir=str(dataset), early_stop_min_delta=0.0)
    weights = train(config, resume=False, log=lambda line: None)
    assert weights is not None  # no time box: the run ends exported
    history = json.loads((Path(config.out_dir) / "history.json").read_text())
    validations = [r for r in history if "val_l1" in r]
    assert [r["step"] for r in validations] == [2, 4, 6, 8, 10, 12]
    best = min(validations, key=lambda r: r["val_l1"])
    checkpoint = torch.load(Path(config.out_dir) / "checkpoint.pt", weights_only=True)
    assert json.loads(checkpoint["convergence"])["best_step"] == best["step"]
    net, _ = load_network(weights)
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(tensor, checkpoint["best_net"][name])


def test_a_run_judged_by_its_objective_keeps_the_best_objective(
    tmp_path: Path, dataset: Path
) -> None:
    config = _config(
        tmp_path,
        dataset_dir=str(dataset),
        early_stop_min_delta=0.0,
        lesion_loss_weight=5.0,
        lesion_patch_fraction=0.5,
        validation_metric="objective",
    )
    train(config, resume=False, log=lambda line: None)
    history = json.loads((Path(config.out_dir) / "history.json").read_text())
    validations = [r for r in history if "val_objective" in r]
    assert all(r["val_lesion"] > 0 for r in validations)  # the objective differs from L1
    for record in validations:
        assert record["val_objective"] == pytest.approx(
            record["val_l1"] + 5.0 * record["val_lesion"]
        )
    best = min(validations, key=lambda r: r["val_objective"])
    checkpoint = torch.load(Path(config.out_dir) / "checkpoint.pt", weights_only=True)
    assert json.loads(checkpoint["convergence"])["best"] == pytest.approx(best["val_objective"])


def test_run_stops_when_converged_and_a_resumed_run_decides_the_same(
    tmp_path: Path, dataset: Path
) -> None:
    # min_delta 1.0 means no validation after the first can count as an improvement
    config = _config(
        tmp_path, dataset_dir=str(dataset), early_stop_patience=2, early_stop_min_delta=1.0
    )
    log: list[str] = []
    train(config, resume=False, log=log.append)
    assert any(line.startswith("converged at step 6") for line in log)
    history = json.loads((Path(config.out_dir) / "history.json").read_text())
    assert max(r["step"] for r in history) == 6

    stopped = dataclasses.replace(config, out_dir=str(tmp_path / "resumed"))
    train(dataclasses.replace(stopped, stage1_steps=4), resume=False, log=lambda line: None)
    resumed_log: list[str] = []
    train(stopped, resume=True, log=resumed_log.append)
    assert any(line.startswith("converged at step 6") for line in resumed_log)


def test_a_resumed_run_counts_the_time_of_every_segment(tmp_path: Path, dataset: Path) -> None:
    config = _config(tmp_path, dataset_dir=str(dataset), early_stop_patience=0)
    train(dataclasses.replace(config, stage1_steps=4), resume=False, log=lambda line: None)
    checkpoint_path = Path(config.out_dir) / "checkpoint.pt"
    state = torch.load(checkpoint_path, weights_only=True)
    assert 0.0 < state["train_seconds"] < 600.0
    state["train_seconds"] = 5000.0  # as if the first segment had trained for 5000 s
    torch.save(state, checkpoint_path)
    weights = train(config, resume=True, log=lambda line: None)
    assert weights is not None  # no time box: the run ends exported
    card = json.loads(weights.with_suffix(".json").read_text())
    assert 5000.0 < card["training"]["wall_seconds"] < 5600.0
    assert card["training"]["steps_done"] == 12


def test_a_time_boxed_segment_stops_at_a_checkpoint_that_resumes_exactly(
    tmp_path: Path, dataset: Path
) -> None:
    config = _config(tmp_path / "whole", dataset_dir=str(dataset), early_stop_patience=0)
    whole = train(config, resume=False, log=lambda line: None)
    assert whole is not None

    boxed = dataclasses.replace(config, out_dir=str(tmp_path / "boxed"))
    log: list[str] = []
    # a box of 0 s ends the segment after its first step, between two checkpoints
    assert train(boxed, resume=False, log=log.append, stop_after_s=0.0) is None
    assert any(line.startswith("time box of 0 s reached at step 1") for line in log)
    assert not list(Path(boxed.out_dir).glob("*.safetensors"))  # nothing exported yet
    state = torch.load(Path(boxed.out_dir) / "checkpoint.pt", weights_only=True)
    assert state["step_index"] == 1

    finished = train(boxed, resume=True, log=lambda line: None)
    assert finished is not None
    card = json.loads(finished.with_suffix(".json").read_text())
    segments = card["training"]["segments"]
    assert [(s["first_step"], s["last_step"], s["device"]) for s in segments] == [
        (0, 1, "cpu"),
        (1, 12, "cpu"),
    ]
    text = render_markdown(ModelCard.from_text(json.dumps(card)), finished.name)
    assert "Segments, oldest first: steps 0-1 on cpu" in text
    expected, _ = load_network(whole)
    resumed, _ = load_network(finished)
    for (name, a), (_, b) in zip(
        expected.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_a_checkpoint_from_before_segments_were_recorded_shows_its_steps_unrecorded(
    tmp_path: Path, dataset: Path
) -> None:
    config = _config(tmp_path, dataset_dir=str(dataset), early_stop_patience=0)
    train(dataclasses.replace(config, stage1_steps=4), resume=False, log=lambda line: None)
    checkpoint_path = Path(config.out_dir) / "checkpoint.pt"
    state = torch.load(checkpoint_path, weights_only=True)
    del state["segments"]  # as written by the trainer before segments were recorded
    torch.save(state, checkpoint_path)
    weights = train(config, resume=True, log=lambda line: None)
    assert weights is not None
    card = json.loads(weights.with_suffix(".json").read_text())
    first, second = card["training"]["segments"]
    assert (first["first_step"], first["last_step"], first["device"]) == (0, 4, "unrecorded")
    assert (second["first_step"], second["last_step"], second["device"]) == (4, 12, "cpu")


def test_no_early_stop_before_the_minimum_steps(tmp_path: Path, dataset: Path) -> None:
    # min_delta 1.0: no validation after the first improves; patience 2 alone stops at 6
    config = _config(
        tmp_path,
        dataset_dir=str(dataset),
        early_stop_patience=2,
        early_stop_min_delta=1.0,
        early_stop_min_steps=10,
    )
    log: list[str] = []
    train(config, resume=False, log=log.append)
    assert any(line.startswith("converged at step 10") for line in log)
