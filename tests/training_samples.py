"""The small training config shared by the training tests (tiny network, CPU, one thread)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from model.training.config import TrainConfig


def small_config(tmp_path: Path, drfs: tuple[float, ...], **overrides: object) -> TrainConfig:
    """A config that trains in a second: 8/16/16 channels, 24-pixel patches, 2 + 3 steps."""
    base = TrainConfig(
        out_dir=str(tmp_path / "run"),
        drfs=drfs,
        widths=(8, 16, 16),
        code_dim=8,
        style_width=4,
        batch_size=4,
        patch_size=24,
        stage1_steps=2,
        stage2_steps=3,
        critic_warmup_steps=1,
        threads=1,
        device="cpu",
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]
