"""Lesion-aware training: lesion-centred patches, the lesion loss term, the style learning rate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training_trainer import _config

from model.losses import lesion_l1_loss
from model.networks import NetworkConfig, UniPETNet
from model.patches import PatchSampler, SuvStudy
from model.training.config import TrainConfig
from model.training.trainer import Trainer, generator_param_groups

DRFS = (4.0, 20.0)


def _lesion_study(seed: int) -> SuvStudy:
    """A flat body with one 2x2x2-voxel lesion in a corner, far from most body voxels."""
    rng = np.random.default_rng(seed)
    full = np.zeros((12, 64, 64), dtype=np.float32)
    full[:, 4:60, 4:60] = 1.0
    labels = np.zeros(full.shape, dtype=np.int16)
    labels[5:7, 6:8, 6:8] = 1
    full[labels > 0] = 8.0
    low = {d: full + rng.normal(0, 0.1, full.shape).astype(np.float32) for d in DRFS}
    return SuvStudy(seed, (6.0, 5.0, 5.0), 1e-4, full, low, lesion_labels=labels)


def _batch_lesion_share(fraction: float) -> float:
    sampler = PatchSampler([_lesion_study(0)], DRFS, 5, 16, lesion_fraction=fraction)
    batch = sampler.sample(np.random.default_rng(3), 64)
    assert batch.lesion_mask is not None
    return float((batch.lesion_mask.sum(axis=(1, 2, 3)) > 0).mean())


def test_lesion_fraction_centres_patches_on_lesions() -> None:
    # 8 lesion voxels among ~37 000 body voxels: body sampling almost never sees the lesion.
    assert _batch_lesion_share(0.0) < 0.1
    assert _batch_lesion_share(1.0) == 1.0


def test_lesion_mask_follows_the_flips_of_its_patch() -> None:
    sampler = PatchSampler([_lesion_study(0)], DRFS, 5, 16, lesion_fraction=1.0)
    batch = sampler.sample(np.random.default_rng(5), 32)
    assert batch.lesion_mask is not None
    hot = batch.full_dose[:, 2:3] > 4.0
    assert np.array_equal(hot, batch.lesion_mask > 0)


def test_lesion_fraction_outside_unit_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="lesion_fraction"):
        PatchSampler([_lesion_study(0)], DRFS, 5, 16, lesion_fraction=1.5)


def test_lesion_loss_is_the_mean_error_over_lesion_voxels_only() -> None:
    target = torch.zeros(1, 1, 4, 4)
    output = torch.ones(1, 1, 4, 4)
    output[0, 0, 0, 0] = 3.0
    lesion = torch.zeros(1, 1, 4, 4)
    lesion[0, 0, 0, :2] = 1.0
    assert float(lesion_l1_loss(output, target, lesion)) == pytest.approx(2.0)
    assert float(lesion_l1_loss(output, target, torch.zeros_like(lesion))) == 0.0


def test_lesion_loss_appears_in_the_step_record() -> None:
    config = _small_config(lesion_loss_weight=0.5, lesion_patch_fraction=1.0)
    sampler = PatchSampler([_lesion_study(0)], DRFS, 5, 16, lesion_fraction=1.0)
    record = Trainer(config, sampler).step()
    assert record["lesion"] > 0.0
    plain = dataclasses.replace(config, lesion_loss_weight=0.0)
    assert "lesion" not in Trainer(plain, sampler).step()


def test_style_path_gets_its_own_learning_rate() -> None:
    net = UniPETNet(NetworkConfig(widths=(8, 16, 16), code_dim=8, style_width=4))
    backbone, style = generator_param_groups(net, 1e-3, 10.0)
    style_ids = {id(p) for p in style["params"]}  # type: ignore[attr-defined]
    assert style["lr"] == pytest.approx(1e-2) and backbone["lr"] == pytest.approx(1e-3)
    assert id(net.get_submodule("enc1.conv1.affine").weight) in style_ids
    assert id(net.head.weight) not in style_ids
    assert all(id(p) in style_ids for p in net.style.parameters())  # type: ignore[union-attr]


def test_full_resolution_modulation_adds_two_modulated_blocks() -> None:
    torch.manual_seed(0)
    config = NetworkConfig(widths=(8, 16, 16), code_dim=8, style_width=4)
    for full in (False, True):
        net = UniPETNet(dataclasses.replace(config, modulate_full_resolution=full))
        modulated = [m for m in net.modules() if hasattr(m, "affine")]
        assert len(modulated) == (12 if full else 8)


def test_cosine_schedule_falls_from_one_to_the_final_fraction() -> None:
    from model.training.trainer import lr_factor

    assert lr_factor("cosine", 0, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor("cosine", 50, 100, 0.1) == pytest.approx(0.55)
    assert lr_factor("cosine", 100, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor("constant", 70, 100, 0.1) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor("linear", 1, 100, 0.1)


def _small_config(**overrides: object) -> TrainConfig:
    """The training tests' tiny config with 16-pixel patches, stage 1 only; its out_dir is
    never written (these tests drive a Trainer, not ``train``)."""
    settings: dict[str, object] = {"batch_size": 2, "patch_size": 16, "stage1_steps": 4}
    config: TrainConfig = _config(
        Path("run-not-written"), **{**settings, "stage2_steps": 0, **overrides}
    )
    return config


def test_init_weights_start_from_a_trained_file(tmp_path: Path) -> None:
    from model.weights_io import save_weights

    sampler = PatchSampler([_lesion_study(0)], DRFS, 5, 16)
    source = Trainer(_small_config(seed=1), sampler)
    source.step()
    weights = tmp_path / "start.safetensors"
    save_weights(source.net, weights, "test")
    started = Trainer(_small_config(seed=2, init_weights=str(weights)), sampler)
    fresh = Trainer(_small_config(seed=2), sampler)
    head = started.net.head.weight
    assert torch.equal(head, source.net.head.weight)
    assert not torch.equal(head, fresh.net.head.weight)


def test_cosine_schedule_is_applied_to_the_optimisers() -> None:
    sampler = PatchSampler([_lesion_study(0)], DRFS, 5, 16)
    trainer = Trainer(_small_config(lr_schedule="cosine", lr_final_fraction=0.1), sampler)
    rates = []
    for _ in range(4):
        trainer.step()
        rates.append(trainer.opt_g.param_groups[0]["lr"])
    assert rates[0] == pytest.approx(2e-4)
    assert rates == sorted(rates, reverse=True) and rates[-1] < 1.2e-4


def test_by_volume_draws_phantoms_in_proportion_to_their_body() -> None:
    small = _lesion_study(0)
    big_full = np.full((24, 64, 64), 2.0, dtype=np.float32)
    big = SuvStudy(1, (3.0, 3.0, 3.0), 1e-4, big_full, {d: big_full for d in DRFS})
    sampler = PatchSampler([small, big], DRFS, 5, 16, by_volume=True)
    assert sampler.study_probabilities is not None
    # The big phantom has 24*64*64 body voxels, the small one 12*56*56.
    expected = 24 * 64 * 64 / (24 * 64 * 64 + 12 * 56 * 56)
    assert sampler.study_probabilities[1] == pytest.approx(expected)
    batch = sampler.sample(np.random.default_rng(0), 400)
    # The big phantom is SUV 2 everywhere; the small one has no voxel at exactly 2.
    share = float((batch.full_dose == 2.0).all(axis=(1, 2, 3)).mean())
    assert share == pytest.approx(expected, abs=0.08)
    assert PatchSampler([small, big], DRFS, 5, 16).study_probabilities is None
