"""Small 2D building blocks of the UniPET denoiser: convolutions, residual blocks, resampling.

The networks work on 2.5D input: a few neighbouring slices stacked as channels, one centre
slice predicted. 2D convolutions keep CPU inference of a whole-body volume within a minute,
which 3D convolutions of the same width do not.

No block normalises by batch or instance statistics: those depend on what else is in the
tile, so a tiled volume would not equal the untiled one, and they rescale activity, which
breaks quantitation. Feature scale is controlled by demodulation and a learned residual gain.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ConvAct",
    "Downsample",
    "ModulatedConv2d",
    "ModulatedResBlock",
    "ResBlock",
    "UpsampleFuse",
]

NEGATIVE_SLOPE = 0.2
DEMOD_EPS = 1e-8


class ConvAct(nn.Sequential):
    """3x3 convolution followed by a leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
            nn.LeakyReLU(NEGATIVE_SLOPE),
        )


class ResBlock(nn.Module):
    """x + g * conv(act(conv(x))): a plain residual block (the vanilla universal backbone).

    ``code`` is accepted and ignored so plain and modulated blocks are interchangeable.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.gain = nn.Parameter(torch.full((1, channels, 1, 1), 0.1))

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        """Residual update of ``x``."""
        update: torch.Tensor = self.conv2(self.act(self.conv1(x)))
        return torch.addcmul(x, self.gain, update)


class ModulatedConv2d(nn.Module):
    """3x3 convolution whose weights are scaled per input channel by a style, then demodulated.

    Equivalent to the per-sample weight ``w'[o,i] = w[o,i] * s[i] / ||w[o,:] * s||``, computed
    as ``conv(x * s) * d`` so one shared weight serves the whole batch: a grouped convolution
    with per-sample weights is several times slower on CPU. The style is ``1 + affine(code)``
    with the affine initialised to zero, so an untrained style leaves the convolution plain.

    With ``demodulate=False`` the output is divided by the norm of the *unstyled* weight
    instead, ``w'[o,i] = w[o,i] * s[i] / ||w[o,:]||``: identical at initialisation (s = 1),
    but a common scale of the style, which demodulation cancels exactly, reaches the output.
    """

    def __init__(
        self, in_channels: int, out_channels: int, code_dim: int, demodulate: bool = True
    ) -> None:
        super().__init__()
        self.demodulate = demodulate
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        nn.init.kaiming_normal_(self.weight, a=NEGATIVE_SLOPE)
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.affine = nn.Linear(code_dim, in_channels)
        nn.init.zeros_(self.affine.weight)
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` (N, C, H, W) with weights modulated by ``code`` (N, code_dim)."""
        style = 1.0 + self.affine(code)
        energy = self.weight.pow(2).sum(dim=(2, 3))
        if self.demodulate:
            demod = torch.rsqrt(style.pow(2) @ energy.t() + DEMOD_EPS)
        else:
            demod = torch.rsqrt(energy.sum(dim=1) + DEMOD_EPS).expand(style.shape[0], -1)
        y = F.conv2d(x * style[:, :, None, None], self.weight, padding=1)
        # bias + y * demod in one pass over the feature map (a quarter of inference time on
        # CPU went to element-wise passes like this one)
        return torch.addcmul(self.bias[None, :, None, None], y, demod[:, :, None, None])


class ModulatedResBlock(nn.Module):
    """x + g * modconv(act(modconv(x, code)), code): the SAN-driven residual block."""

    def __init__(self, channels: int, code_dim: int, demodulate: bool = True) -> None:
        super().__init__()
        self.conv1 = ModulatedConv2d(channels, channels, code_dim, demodulate)
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE)
        self.conv2 = ModulatedConv2d(channels, channels, code_dim, demodulate)
        self.gain = nn.Parameter(torch.full((1, channels, 1, 1), 0.1))

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        """Residual update of ``x`` in the style given by ``code``.

        Raises:
            ValueError: no style code was given.
        """
        if code is None:
            raise ValueError("a modulated residual block needs a style code")
        update: torch.Tensor = self.conv2(self.act(self.conv1(x, code)), code)
        return torch.addcmul(x, self.gain, update)


class Downsample(ConvAct):
    """Strided 3x3 convolution: half the resolution, new channel count."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, stride=2)


# The four output phases (row parity, column parity) of an x2 nearest upsampling.
_PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


def _phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(O, C, 3, 3) -> (4 O, C, 2, 2): the 3x3 kernel as seen by each output phase of a x2
    nearest upsampling, where two of its three taps along each axis land on one input pixel.

    An even output row 2i reads input rows i-1 (tap 0) and i (taps 1, 2); an odd one reads
    rows i (taps 0, 1) and i+1 (tap 2); columns alike.
    """

    def fold(w: torch.Tensor, axis: int, odd: int) -> torch.Tensor:
        first, middle, last = w.unbind(axis)
        pair = (first, middle + last) if odd == 0 else (first + middle, last)
        return torch.stack(pair, axis)

    return torch.cat([fold(fold(weight, 2, a), 3, b) for a, b in _PHASES], dim=0)


def conv3x3_of_upsampled(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``conv2d(interpolate(x, scale_factor=2, mode="nearest"), weight, padding=1)``,
    computed at the input's resolution: one 2x2 convolution per output phase (4 taps instead
    of 9, on a quarter of the pixels), interleaved into the upsampled grid. No upsampled
    copy of ``x`` is ever made.
    """
    n, _, height, width = x.shape
    out_channels = weight.shape[0]
    phases = F.conv2d(F.pad(x, (1, 1, 1, 1)), _phase_kernels(weight))
    layout = (
        torch.channels_last
        if phases.is_contiguous(memory_format=torch.channels_last)
        else torch.contiguous_format
    )
    out = torch.empty(
        (n, out_channels, 2 * height, 2 * width),
        dtype=phases.dtype,
        device=phases.device,
        memory_format=layout,
    )
    for k, (a, b) in enumerate(_PHASES):
        channels = slice(k * out_channels, (k + 1) * out_channels)
        out[:, :, a::2, b::2] = phases[:, channels, a : a + height, b : b + width]
    return out


class UpsampleFuse(nn.Module):
    """Nearest-neighbour x2 upsampling, concatenation with the skip, 3x3 fusion convolution.

    Computed without materialising either: the fusion convolution splits into its part on
    the upsampled input (:func:`conv3x3_of_upsampled`) plus its part on the skip. Same
    parameters and figures as the plain upsample-concatenate-convolve, a seventh faster.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fuse = ConvAct(in_channels + skip_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` to the skip's size and fuse both."""
        conv, act = cast(nn.Conv2d, self.fuse[0]), self.fuse[1]
        if tuple(skip.shape[-2:]) != (2 * x.shape[-2], 2 * x.shape[-1]):
            up = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
            fused: torch.Tensor = self.fuse(torch.cat([up, skip], dim=1))
            return fused
        split = x.shape[1]
        from_skip = F.conv2d(skip, conv.weight[:, split:], conv.bias, padding=1)
        out: torch.Tensor = act(from_skip + conv3x3_of_upsampled(x, conv.weight[:, :split]))
        return out
