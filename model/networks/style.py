"""The style alignment network (SAN): a multi-scale encoder of the low-dose input's "style".

Low-dose images of different dose reduction factors (DRFs) differ mostly in the statistics of
their features (noise amplitude and texture), not in anatomy. The encoder reads the input
stack at 1/2 and 1/4 resolution and summarises each scale by per-channel mean and standard
deviation over the slice; a linear map turns each summary into the style code that modulates
the denoiser's residual blocks at that scale. The same feature statistics, computed on the
network's output and on the full-dose target, are what the style-consistency loss compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.networks.blocks import ConvAct

__all__ = ["StyleCodes", "StyleEncoder", "feature_statistics"]


@dataclass(frozen=True)
class StyleCodes:
    """Per-sample style codes, one per modulated resolution: (N, code_dim) each."""

    half: torch.Tensor
    quarter: torch.Tensor

    def flat(self) -> torch.Tensor:
        """Both codes side by side, (N, 2 * code_dim)."""
        return torch.cat([self.half, self.quarter], dim=1)


def feature_statistics(features: torch.Tensor) -> torch.Tensor:
    """Per-channel spatial mean and standard deviation of (N, C, H, W) features: (N, 2C).

    The standard deviation is taken over the whole slice with an epsilon inside the root, so
    its gradient stays finite on a constant feature map (e.g. an all-background tile).
    """
    flat = features.flatten(2)
    mean = flat.mean(dim=2)
    std = torch.sqrt(flat.var(dim=2, unbiased=False) + 1e-6)
    return torch.cat([mean, std], dim=1)


class StyleEncoder(nn.Module):
    """Input stack -> features at 1/2 and 1/4 resolution -> one style code per scale."""

    def __init__(self, in_channels: int, width: int, code_dim: int) -> None:
        super().__init__()
        self.to_half = nn.Sequential(ConvAct(in_channels, width, stride=2), ConvAct(width, width))
        self.to_quarter = nn.Sequential(
            ConvAct(width, 2 * width, stride=2), ConvAct(2 * width, 2 * width)
        )
        self.code_half = nn.Linear(2 * width, code_dim)
        self.code_quarter = nn.Linear(4 * width, code_dim)

    def features(self, stack: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder feature maps at 1/2 and 1/4 resolution."""
        half = self.to_half(stack)
        return half, self.to_quarter(half)

    def forward(self, stack: torch.Tensor) -> StyleCodes:
        """Style codes of a (N, slices, H, W) stack."""
        half, quarter = self.features(stack)
        return StyleCodes(
            half=self.code_half(feature_statistics(half)),
            quarter=self.code_quarter(feature_statistics(quarter)),
        )
