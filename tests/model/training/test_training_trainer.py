"""Training: patch sampling, one step learns, resume is exact, CLI config, export and card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from training_samples import small_config

from model.drf_estimate import DrfCalibration
from model.patches import PatchSampler, SuvStudy, slice_stack
from model.simulate.dataset import build_dataset
from model.train import config_from_args
from model.training.config import TrainConfig
from model.training.run import train
from model.training.trainer import Trainer
from model.weights_io import load_network, sha256_file

DRFS = (4.0, 20.0)


def _study(seed: int) -> SuvStudy:
    """A blocky phantom in SUV with Poisson-like noise growing with the DRF."""
    rng = np.random.default_rng(seed)
    full = np.zeros((12, 40, 40), dtype=np.float32)
    full[:, 8:32, 8:32] = 1.5
    full[3:9, 14:20, 20:28] = 6.0
    low = {
        drf: (full + rng.normal(0, 0.1 * np.sqrt(drf), full.shape) * (full > 0)).astype(np.float32)
        for drf in DRFS
    }
    return SuvStudy(seed, (6.0, 5.0, 5.0), 1e-4, full, low)


def _config(tmp_path: Path, **overrides: object) -> TrainConfig:
    return small_config(tmp_path, DRFS, **overrides)


def _trainer(config: TrainConfig) -> Trainer:
    sampler = PatchSampler([_study(0), _study(1)], config.drfs, config.context_slices, 24)
    return Trainer(config, sampler)


def test_slice_stack_repeats_edge_slices() -> None:
    volume = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 2, 2), np.float32)
    stacks = slice_stack(volume, np.array([0, 3]), 5)
    assert stacks[:, :, 0, 0].tolist() == [[0, 0, 0, 1, 2], [1, 2, 3, 3, 3]]


def test_a_windowed_stack_is_the_window_of_the_whole_stack() -> None:
    volume = np.random.default_rng(0).random((6, 30, 40), dtype=np.float32)
    centres = np.array([0, 2, 5])
    window = (slice(3, 19), slice(20, 36))
    whole = slice_stack(volume, centres, 5)
    assert np.array_equal(slice_stack(volume, centres, 5, window), whole[:, :, 3:19, 20:36])


def test_sampler_is_deterministic_per_generator_state() -> None:
    sampler = PatchSampler([_study(0)], DRFS, 5, 24)
    first = sampler.sample(np.random.default_rng(7), 3)
    second = sampler.sample(np.random.default_rng(7), 3)
    assert np.array_equal(first.low_dose, second.low_dose)
    assert first.low_dose.shape == first.full_dose.shape == (3, 5, 24, 24)
    assert set(first.drf.tolist()) <= set(DRFS)


def test_repeated_steps_on_one_batch_decrease_the_loss(tmp_path: Path) -> None:
    config = _config(tmp_path, stage1_steps=100, lr_generator=2e-3)
    trainer = _trainer(config)
    batch = trainer.sampler.sample(np.random.default_rng(0), 4)
    losses = [trainer.train_on(batch)["l1"] for _ in range(8)]
    assert losses[-1] < losses[0]


def test_stage_two_trains_critic_then_generator(tmp_path: Path) -> None:
    trainer = _trainer(_config(tmp_path))
    records = [trainer.step() for _ in range(5)]
    assert [r["stage"] for r in records] == [1, 1, 2, 2, 2]
    assert "critic" in records[2] and "l1" not in records[2]
    assert {"critic", "l1", "style", "adv", "total"} <= set(records[3])


@pytest.mark.parametrize("stop_at", [1, 3])
def test_resume_from_checkpoint_gives_the_same_next_step(tmp_path: Path, stop_at: int) -> None:
    config = _config(tmp_path)
    original = _trainer(config)
    for _ in range(stop_at):
        original.step()
    original.save_checkpoint(tmp_path / "ckpt.pt")
    expected = original.step()
    resumed = _trainer(config)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    assert resumed.step() == expected
    assert len(resumed.history) == stop_at + 1


def test_config_from_json_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"seed": 5, "drfs": [4, 10], "batch_size": 2}))
    config, resume = config_from_args(["--config", str(path), "--batch-size", "3", "--resume"])
    assert (config.seed, config.drfs, config.batch_size, resume) == (5, (4, 10), 3, True)


def test_train_exports_weights_and_model_card(tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    list(build_dataset(dataset, {"train": [3, 4]}, DRFS, size="tiny"))
    config = _config(tmp_path, dataset_dir=str(dataset), stage1_steps=2, stage2_steps=2)
    weights = train(config, resume=False, log=lambda line: None)
    assert weights is not None  # no time box: the run ends exported
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["weights_sha256"] == sha256_file(weights)
    assert card["data"]["train_seeds"] == [3, 4]
    assert card["training"]["steps_done"] == 4
    net, header = load_network(weights)
    assert header["version"] == config.version and net.config == config.network()
    calibration = DrfCalibration.from_json(header["drf_calibration"])
    assert calibration.n_volumes == 4
    assert card["drf_calibration"]["coefficients"] == list(calibration.coefficients)
    assert not any(key.startswith("critic") for key in net.state_dict())


def test_resume_refuses_another_batch_size(tmp_path: Path) -> None:
    _trainer(_config(tmp_path)).save_checkpoint(tmp_path / "ckpt.pt")
    scaled = _trainer(_config(tmp_path).with_batch_scale(8))
    with pytest.raises(ValueError, match="same --batch-scale"):
        scaled.load_checkpoint(tmp_path / "ckpt.pt")


def test_resume_refuses_another_architecture(tmp_path: Path) -> None:
    _trainer(_config(tmp_path)).save_checkpoint(tmp_path / "ckpt.pt")
    other = _trainer(_config(tmp_path, widths=(8, 16, 24)))
    with pytest.raises(ValueError):
        other.load_checkpoint(tmp_path / "ckpt.pt")
