"""The style alignment network (SAN): a multi-scale encoder of the low-dose input's "style".

Low-dose images of different dose reduction factors (DRFs) differ mostly in the statistics of
their features (noise amplitude and texture), not in anatomy. The encoder reads the input
stack at 1/2 and 1/4 resolution and summarises each scale by per-channel mean and standard
deviation over the slice; a linear map turns each summary into the style code that modulates
the denoiser's residual blocks at that scale. The same feature statistics, computed on the
network's output and on the full-dose target, are what the style-consistency loss compares.

Two options make the code about noise rather than anatomy (with the defaults, a trained
encoder's codes varied about 12 times more between slices of one DRF than between DRF 4 and
DRF 100, so they described anatomy, not dose):

* :class:`StylePooling` ``BODY`` pools the statistics over body voxels only (stack mean above
  :data:`STYLE_BODY_SUV`), so the share of air in a patch or slice does not set the code, and
  a 64-pixel training patch and a whole inference slice are summarised alike.
* :class:`StyleInput` ``SUV_HIGHPASS`` also feeds the encoder the relative high-pass residual
  ``(x - box3(x)) / max(box7(x), STYLE_BODY_SUV)`` of every slice: Poisson-driven noise makes
  its spread grow like sqrt(DRF) whatever the uptake, the statistic ``model.drf_estimate``
  already calibrates.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.networks.blocks import ConvAct

__all__ = [
    "STYLE_BODY_SUV",
    "StyleCodes",
    "StyleEncoder",
    "StyleInput",
    "StylePooling",
    "feature_statistics",
    "relative_highpass",
]

STYLE_BODY_SUV = 0.2  # same body threshold as the patch sampler (``model.patches.BODY_SUV``)
STD_EPS = 1e-6


class StylePooling(enum.StrEnum):
    """Where the encoder's per-channel statistics are pooled: whole slice or body only."""

    SLICE = "slice"
    BODY = "body"


class StyleInput(enum.StrEnum):
    """What the encoder reads: the SUV stack, or the stack plus its relative high-pass."""

    SUV = "suv"
    SUV_HIGHPASS = "suv_highpass"


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
    std = torch.sqrt(flat.var(dim=2, unbiased=False) + STD_EPS)
    return torch.cat([mean, std], dim=1)


def masked_feature_statistics(features: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """:func:`feature_statistics` weighted by a (N, 1, H, W) mask in [0, 1]: (N, 2C).

    A sample whose mask is empty (an all-air tile) falls back to the whole slice, so the
    statistics stay defined and differentiable.
    """
    total = weight.sum(dim=(2, 3), keepdim=True)
    weight = torch.where(total > 0, weight, torch.ones_like(weight))
    weight = weight / weight.sum(dim=(2, 3), keepdim=True)
    mean = (features * weight).sum(dim=(2, 3), keepdim=True)
    var = ((features - mean).pow(2) * weight).sum(dim=(2, 3))
    return torch.cat([mean.flatten(1), torch.sqrt(var + STD_EPS)], dim=1)


def _valid_counts(length: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """How many of the ``size`` window's positions fall inside a line of ``length``."""
    index = torch.arange(length, device=like.device, dtype=like.dtype)
    half = size // 2
    return (index + half).clamp_max(length - 1) - (index - half).clamp_min(0) + 1


def box_mean(stack: torch.Tensor, size: int) -> torch.Tensor:
    """Mean over the ``size`` x ``size`` window of every pixel of each (N, S, H, W) slice,
    over the pixels inside the slice only (``avg_pool2d`` with ``count_include_pad=False``).

    Computed as a depthwise convolution with a ones kernel divided by the count of pixels in
    the window: the same figures several times faster on CPU than average pooling, whose
    stride-1 kernel there took an eighth of a whole slice batch's inference time.
    """
    channels, (height, width) = stack.shape[1], stack.shape[-2:]
    ones = torch.ones(channels, 1, size, size, device=stack.device, dtype=stack.dtype)
    sums = F.conv2d(stack, ones, padding=size // 2, groups=channels)
    counts = _valid_counts(height, size, stack)[:, None] * _valid_counts(width, size, stack)
    return sums / counts


def relative_highpass(stack: torch.Tensor) -> torch.Tensor:
    """Per-slice ``(x - box3(x)) / max(box7(x), STYLE_BODY_SUV)`` of a (N, S, H, W) stack.

    The floor on the local mean keeps air (SUV ~ 0) from dividing by zero.
    """
    local = box_mean(stack, 3)
    wide = box_mean(stack, 7)
    return (stack - local) / wide.clamp_min(STYLE_BODY_SUV)


class StyleEncoder(nn.Module):
    """Input stack -> features at 1/2 and 1/4 resolution -> one style code per scale."""

    def __init__(
        self,
        in_channels: int,
        width: int,
        code_dim: int,
        pooling: StylePooling = StylePooling.SLICE,
        style_input: StyleInput = StyleInput.SUV,
    ) -> None:
        super().__init__()
        self.pooling = StylePooling(pooling)
        self.style_input = StyleInput(style_input)
        if self.style_input is StyleInput.SUV_HIGHPASS:
            in_channels *= 2
        self.to_half = nn.Sequential(ConvAct(in_channels, width, stride=2), ConvAct(width, width))
        self.to_quarter = nn.Sequential(
            ConvAct(width, 2 * width, stride=2), ConvAct(2 * width, 2 * width)
        )
        self.code_half = nn.Linear(2 * width, code_dim)
        self.code_quarter = nn.Linear(4 * width, code_dim)

    def encoder_input(self, stack: torch.Tensor) -> torch.Tensor:
        """What the convolutions read: the stack, with its relative high-pass if configured."""
        if self.style_input is StyleInput.SUV_HIGHPASS:
            return torch.cat([stack, relative_highpass(stack)], dim=1)
        return stack

    def features(self, stack: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder feature maps at 1/2 and 1/4 resolution."""
        half = self.to_half(self.encoder_input(stack))
        return half, self.to_quarter(half)

    def forward(self, stack: torch.Tensor) -> StyleCodes:
        """Style codes of a (N, slices, H, W) stack."""
        half, quarter = self.features(stack)
        return StyleCodes(
            half=self.code_half(self._statistics(half, stack)),
            quarter=self.code_quarter(self._statistics(quarter, stack)),
        )

    def _statistics(self, features: torch.Tensor, stack: torch.Tensor) -> torch.Tensor:
        """Feature statistics pooled as :attr:`pooling` says."""
        if self.pooling is StylePooling.SLICE:
            return feature_statistics(features)
        body = (stack.mean(dim=1, keepdim=True) > STYLE_BODY_SUV).to(stack.dtype)
        # Area resampling gives each coarse voxel its body fraction, a soft mask.
        weight = F.interpolate(body, size=features.shape[-2:], mode="area")
        return masked_feature_statistics(features, weight)
