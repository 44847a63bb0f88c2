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
import torch

from model.card import Segment
from model.card._json import Reader
from model.drf_estimate import (
    FEATURE_NAMES,
    VOXEL_FEATURE_NAMES,
    WEIGHT_FEATURE_NAMES,
    DrfCalibration,
    fit_drf_calibration,
    noise_features,
)
from model.patches import PatchSampler, SuvStudy, load_split
from model.training.card import training_card
from model.training.config import TrainConfig
from model.training.trainer import Trainer
from model.training.validation import ConvergenceTracker, ValidationSet
from model.weights_io import save_weights

__all__ = ["calibrate_drf", "train"]


def calibrate_drf(studies: Sequence[SuvStudy], drfs: Sequence[float]) -> DrfCalibration:
    """Fit the noise-statistic DRF estimate on every (phantom, DRF) volume of the training set.

    Studies on more than one voxel grid get the voxel-size features too (the same counts
    are noisier per voxel in smaller voxels), and the patient weight when every study has
    one (a standard acquisition of a heavier patient is noisier). Needs at least two
    phantoms (the fit reports a leave-one-phantom-out error).
    """
    grids = {tuple(study.spacing_mm) for study in studies}
    weighed = all(study.patient_weight_kg for study in studies)
    names: tuple[str, ...] = FEATURE_NAMES
    if len(grids) > 1:
        names = WEIGHT_FEATURE_NAMES if weighed else VOXEL_FEATURE_NAMES
    rows, targets, groups = [], [], []
    for study in studies:
        for drf in drfs:
            bqml = study.low_dose_suv[float(drf)] / np.float32(study.suv_per_bqml)
            rows.append(
                noise_features(
                    bqml, study.suv_per_bqml, study.spacing_mm, names, study.patient_weight_kg
                )
            )
            targets.append(float(drf))
            groups.append(study.seed)
    return fit_drf_calibration(np.stack(rows), targets, groups, names)


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


def _validation(config: TrainConfig) -> ValidationSet | None:
    """The fixed validation patches of the dataset's validation split (None when off)."""
    if config.validate_every <= 0:
        return None
    studies = load_split(Path(config.dataset_dir), "validation", config.drfs)
    return ValidationSet.draw(
        studies,
        config.drfs,
        config.context_slices,
        config.patch_size,
        config.validation_patches,
        config.seed,
        config.lesion_patch_fraction,
    )


def _state_copy(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of a network's weights (the best so far must not follow training)."""
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _earlier_segments(
    saved: dict[str, object], step: int, seconds: float
) -> list[dict[str, object]]:
    """The segments a checkpoint records; a checkpoint from before segments were recorded
    gets one for all its steps, on device "unrecorded"."""
    if "segments" in saved:
        recorded: list[dict[str, object]] = json.loads(str(saved["segments"]))
        return recorded
    if step == 0:
        return []
    return [
        {
            "first_step": 0,
            "last_step": step,
            "wall_seconds": round(seconds, 1),
            "device": "unrecorded",
            "threads": 0,
            "torch": "unrecorded",
        }
    ]


def _elapsed(start: float) -> float:
    """Seconds since ``start`` (a ``time.perf_counter`` reading)."""
    return time.perf_counter() - start


def train(
    config: TrainConfig,
    resume: bool,
    log: Callable[[str], None],
    stop_after_s: float | None = None,
) -> Path | None:
    """Run (or resume) a whole training; returns the path of the exported weights.

    Writes ``config.json``, ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the
    end), ``history.json``, the weights and their card skeleton into ``config.out_dir``.
    With validation on, the run stops when it has converged and exports the weights of its
    best validation; ``history.json`` then holds the validation records too.

    ``stop_after_s`` time-boxes this segment (a lent machine's lease): once that many seconds
    have passed since the call, the step just taken is checkpointed and None is returned, so
    that ``resume`` continues exactly there, on this machine or another.
    """
    called = time.perf_counter()  # the time box counts data loading too
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config.to_json_dict(), indent=1))
    studies = load_split(Path(config.dataset_dir), "train", config.drfs)
    for extra in config.extra_dataset_dirs:
        studies += load_split(Path(extra), "train", config.drfs)
    trainer = Trainer(config, _sampler(config, studies))
    validation = _validation(config)
    tracker = ConvergenceTracker(config.early_stop_patience, config.early_stop_min_delta)
    best_state: dict[str, torch.Tensor] | None = None
    checkpoint = out / "checkpoint.pt"
    earlier_seconds = 0.0  # training time of the segments before a resume
    segments: list[dict[str, object]] = []  # where the steps before a resume ran
    if resume and checkpoint.is_file():
        saved = trainer.load_checkpoint(checkpoint)
        earlier_seconds = float(saved.get("train_seconds", 0.0))  # type: ignore[arg-type]
        segments = _earlier_segments(saved, trainer.step_index, earlier_seconds)
        if "convergence" in saved:
            tracker.restore(json.loads(str(saved["convergence"])))
        if isinstance(saved.get("best_net"), dict):
            best_state = saved["best_net"]  # type: ignore[assignment]
        log(f"resumed at step {trainer.step_index}")

    first_step = trainer.step_index

    def this_segment() -> dict[str, object]:
        return {
            "first_step": first_step,
            "last_step": trainer.step_index,
            "wall_seconds": round(time.perf_counter() - start, 1),
            "device": str(trainer.device),
            "threads": config.threads,
            "torch": torch.__version__,
        }

    def save() -> None:
        extra: dict[str, object] = {
            "convergence": json.dumps(tracker.to_json()),
            "train_seconds": earlier_seconds + time.perf_counter() - start,
            "segments": json.dumps([*segments, this_segment()]),
        }
        if best_state is not None:
            extra["best_net"] = best_state
        trainer.save_checkpoint(checkpoint, extra)

    metric = f"val_{config.validation_metric}"  # the figure that decides convergence
    start = time.perf_counter()
    converged = False
    while trainer.step_index < config.total_steps and not converged:
        record = trainer.step()
        if trainer.step_index % config.log_every == 0:
            parts = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "step")
            log(f"step {trainer.step_index} {parts} ({time.perf_counter() - start:.0f} s)")
        if validation is not None and trainer.step_index % config.validate_every == 0:
            figures = validation.loss(trainer.net, trainer.device, config.lesion_loss_weight)
            stalled = tracker.update(trainer.step_index, figures[metric])
            converged = stalled and trainer.step_index >= config.early_stop_min_steps
            if tracker.is_best(trainer.step_index):
                best_state = _state_copy(trainer.net)
            trainer.history.append({"step": float(trainer.step_index), **figures})
            judged = "" if metric == "val_l1" else f" {metric}={figures[metric]:.5g}"
            log(
                f"validation step {trainer.step_index} val_l1={figures['val_l1']:.5g} "
                f"val_lesion={figures['val_lesion']:.5g}{judged} "
                f"best={tracker.best:.5g}@{tracker.best_step} stale={tracker.stale}"
            )
        if trainer.step_index % config.checkpoint_every == 0 or converged:
            save()
        if not converged and stop_after_s is not None and _elapsed(called) >= stop_after_s:
            save()
            log(f"time box of {stop_after_s:.0f} s reached at step {trainer.step_index}")
            return None
    save()
    if converged:
        log(f"converged at step {trainer.step_index}: best validation at {tracker.best_step}")
    if best_state is not None:
        trainer.net.load_state_dict(best_state)
    (out / "history.json").write_text(json.dumps(trainer.history))
    calibration = calibrate_drf(studies, config.drfs)
    log(f"DRF calibration: LOO median factor error {calibration.loo_median_factor_error:.2f}")
    weights = out / f"unipet-{config.variant}.safetensors"
    sha256 = save_weights(
        trainer.net, weights, config.version, {"drf_calibration": calibration.to_json()}
    )
    seconds = earlier_seconds + time.perf_counter() - start  # every segment of the run
    ran = tuple(Segment.from_json(Reader(d, "segment")) for d in [*segments, this_segment()])
    card = training_card(trainer, sha256, seconds, calibration, ran)
    weights.with_suffix(".json").write_text(json.dumps(card.to_json(), indent=1))
    return weights
