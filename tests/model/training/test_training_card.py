"""The training card skeleton: the DRF and voxel ranges of the studies it trained on, and
the stages a fine-tune was built on."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from model.card import ModelCard, Segment, TrainedRanges, render_markdown
from model.drf_estimate import DrfCalibration
from model.patches import PatchSampler, SuvStudy
from model.training.card import earlier_stages, trained_ranges, training_card
from model.training.config import TrainConfig
from model.training.trainer import Trainer
from model.weights_io import save_weights, sha256_file

DRFS = (4.0, 20.0, 50.0)


def _study(seed: int, spacing_mm: tuple[float, float, float]) -> SuvStudy:
    """A uniform body with a little noise per DRF, on the given voxel grid."""
    rng = np.random.default_rng(seed)
    full = np.zeros((8, 32, 32), dtype=np.float32)
    full[:, 6:26, 6:26] = 1.5
    low = {
        d: (full + rng.normal(0, 0.05, full.shape) * (full > 0)).astype(np.float32) for d in DRFS
    }
    return SuvStudy(seed, spacing_mm, 1e-4, full, low)


def _trainer(tmp_path: Path) -> Trainer:
    config = TrainConfig(
        out_dir=str(tmp_path / "run"),
        dataset_dir=str(tmp_path / "no-dataset"),
        drfs=DRFS,
        widths=(4, 8, 8),
        code_dim=4,
        style_width=4,
        patch_size=16,
        threads=1,
        device="cpu",
    )
    # Two sizes mixed, one with anisotropic pixels: rows 5 mm, columns 4.5 mm.
    studies = [_study(0, (6.0, 5.0, 4.5)), _study(1, (3.0, 3.6, 3.6))]
    return Trainer(config, PatchSampler(studies, DRFS, config.context_slices, 16))


def test_ranges_span_every_study_and_drf(tmp_path: Path) -> None:
    assert trained_ranges(_trainer(tmp_path)) == TrainedRanges(
        drf=(4.0, 50.0), pixel_mm=(3.6, 5.0), slice_mm=(3.0, 6.0)
    )


def test_the_skeleton_card_carries_them_through_its_json(tmp_path: Path) -> None:
    calibration = DrfCalibration((2.0, 0.0, 0.0, 0.0, 8.0), 2, 1.0)
    card = training_card(_trainer(tmp_path), "ab" * 32, 12.0, calibration)
    assert card.data.trained_ranges == TrainedRanges((4.0, 50.0), (3.6, 5.0), (3.0, 6.0))
    again = ModelCard.from_text(card.to_text())
    assert again.data.trained_ranges == card.data.trained_ranges
    assert again.data.effective_ranges() == card.data.trained_ranges


def _saved_run(
    tmp_path: Path,
    name: str,
    seconds: float,
    init: Path | None = None,
    segments: tuple[Segment, ...] = (),
) -> Path:
    """A finished run's weights with its card beside them, as ``model.train`` leaves them."""
    trainer = _trainer(tmp_path / name)
    if init is not None:
        trainer = Trainer(
            dataclasses.replace(trainer.config, init_weights=str(init)), trainer.sampler
        )
    trainer.step_index = 40 if init is None else 15
    weights = tmp_path / f"{name}.safetensors"
    sha256 = save_weights(trainer.net, weights, "1.1.0")
    card = training_card(
        trainer, sha256, seconds, DrfCalibration((2.0, 0.0, 0.0, 0.0, 8.0), 2, 1.0), segments
    )
    weights.with_suffix(".json").write_text(card.to_text())
    return weights


def test_a_fine_tune_card_states_every_stage_it_was_built_on(tmp_path: Path) -> None:
    first = _saved_run(tmp_path, "l1", 3600.0)
    second = _saved_run(tmp_path, "lesion", 1800.0, init=first)
    third = _saved_run(tmp_path, "rals", 900.0, init=second)
    card = ModelCard.from_text(third.with_suffix(".json").read_text())
    stages = card.training.earlier_stages
    assert [s.weights_sha256 for s in stages] == [sha256_file(first), sha256_file(second)]
    assert [(s.steps_done, s.wall_seconds) for s in stages] == [(40, 3600.0), (15, 1800.0)]
    assert (card.training.total_steps, card.training.total_seconds) == (70, 6300.0)
    text = render_markdown(card, third.name)
    assert "All stages together: 70 steps, 1.75 h" in text


def test_a_stage_resumed_on_other_hardware_names_both_devices(tmp_path: Path) -> None:
    segments = (
        Segment(0, 30, 3000.0, "cpu", 1, "2.13.0+cpu"),
        Segment(30, 40, 600.0, "cuda", 2, "2.11.0+cu130"),
    )
    first = _saved_run(tmp_path, "l1", 3600.0, segments=segments)
    second = _saved_run(tmp_path, "lesion", 1800.0, init=first)
    card = ModelCard.from_text(second.with_suffix(".json").read_text())
    assert [s.device for s in card.training.earlier_stages] == ["cpu+cuda"]
    assert card.hardware.device == "cpu"  # the fine-tune itself ran on the CPU


def test_starting_weights_whose_card_names_other_bytes_bring_no_history(tmp_path: Path) -> None:
    first = _saved_run(tmp_path, "l1", 3600.0)
    card_sha256 = sha256_file(first)
    other = _trainer(tmp_path / "other").net  # seeded alike: its bytes may equal the run's
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    save_weights(other, first, "1.1.0")  # replaced after its run
    assert sha256_file(first) != card_sha256
    assert earlier_stages(first) == ()
    assert earlier_stages(tmp_path / "no-card.safetensors") == ()
