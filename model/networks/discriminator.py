"""Critic for the region-aware adversarial loss (training only; never shipped in weights).

A WGAN critic outputs an unbounded score, not a probability, and must not normalise over the
batch: the gradient penalty is defined per sample, and batch statistics would couple them.
It scores one slice (the masked centre slice) with a small strided conv stack and averages the
patch scores, so each score is about local texture, not global anatomy.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PatchCritic"]


class PatchCritic(nn.Module):
    """Image (N, 1, H, W) -> realism score (N,)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * width, 1, 3, padding=1),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Mean patch score per sample."""
        scores: torch.Tensor = self.body(image)
        return scores.mean(dim=(1, 2, 3))
