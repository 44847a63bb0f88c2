"""A whole training run: data, the step loop with checkpoints, the DRF calibration, export.

A fraction ``lesion_patch_fraction`` of the patches is centred on a lesion, which needs the
simulation's lesion labels (only training has them). The DRF estimate is not learned: a
noise statistic is calibrated on the training phantoms after training (``model.drf_estimate``)
and stored with the weights, so every backend can report it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from model.drf_estimate import DrfCalibration, fit_drf_calibration, noise_features
from model.patches import PatchSampler, SuvStudy, load_split
from model.training.card import training_card
from model.training.config import TrainConfig
from model.training.trainer import Trainer
from model.weights_io import save_weights

__all__ = ["calibrate_drf", "train"]


def calibrate_drf(studies: Sequence[SuvStudy], drfs: Sequence[float]) -> DrfCalibration:
    """Fit the noise-statistic DRF estimate on every (phantom, DRF) volume of the training set.

    Needs at least two phantoms (the fit reports a leave-one-phantom-out error).
    """
    rows, targets, groups = [], [], []
    for study in studies:
        for drf in drfs:
            bqml = study.low_dose_suv[float(drf)] / np.float32(study.suv_per_bqml)
            rows.append(noise_features(bqml, study.suv_per_bqml))
            targets.append(float(drf))
            groups.append(study.seed)
    return fit_drf_calibration(np.stack(rows), targets, groups)


def _sampler(config: TrainConfig, studies: list[SuvStudy]) -> PatchSampler:
    """The patch sampler of a config over the loaded training studies."""
    return PatchSampler(
        studies,
        config.drfs,
        config.context_slices,
        config.patch_size,
        lesion_fraction=config.lesion_patch_fraction,
        by_volume=config.sample_by_volume,
    )


def train(config: TrainConfig, resume: bool, log: Callable[[str], None]) -> Path:
    """Run (or resume) a whole training; returns the path of the exported weights.

    Writes ``config.json``, ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the
    end), ``history.json``, the weights and their card skeleton into ``config.out_dir``.
    """
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_json_dict(), indent=1))
    studies = load_split(Path(config.dataset_dir), "train", config.drfs)
    for extra in config.extra_dataset_dirs:
        studies += load_split(Path(extra), "train", config.drfs)
    trainer = Trainer(config, _sampler(config, studies))
    checkpoint = out / "checkpoint.pt"
    if resume and checkpoint.is_file():
        trainer.load_checkpoint(checkpoint)
        log(f"resumed at step {trainer.step_index}")
    start = time.perf_counter()
    while trainer.step_index < config.total_steps:
        record = trainer.step()
        if trainer.step_index % config.log_every == 0:
            parts = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "step")
            log(f"step {trainer.step_index} {parts} ({time.perf_counter() - start:.0f} s)")
        if trainer.step_index % config.checkpoint_every == 0:
            trainer.save_checkpoint(checkpoint)
    trainer.save_checkpoint(checkpoint)
    (out / "history.json").write_text(json.dumps(trainer.history))
    calibration = calibrate_drf(studies, config.drfs)
    log(f"DRF calibration: LOO median factor error {calibration.loo_median_factor_error:.2f}")
    weights = out / f"unipet-{config.variant}.safetensors"
    sha256 = save_weights(
        trainer.net, weights, config.version, {"drf_calibration": calibration.to_json()}
    )
    card = training_card(trainer, sha256, time.perf_counter() - start, calibration)
    weights.with_suffix(".json").write_text(json.dumps(card.to_json(), indent=1))
    return weights
