"""UniPET generator: a three-level 2.5D U-Net whose coarse residual blocks are style-modulated.

Diagram (C = widths, S = context slices, codes from :class:`StyleEncoder`)::

    stack (N,S,H,W) SUV ─ stem ─ ResBlock ───────────────────────────── skip0 ─┐
                                    │ Down                                      │
                             ModResBlock(code.half) ─────────────── skip1 ─┐    │
                                    │ Down                                 │    │
                             ModResBlock(code.quarter) x2                  │    │
                                    │ UpsampleFuse <───────────────────────┘    │
                             ModResBlock(code.half)                             │
                                    │ UpsampleFuse <────────────────────────────┘
                             ResBlock ─ head ─> residual (N,1,H,W)
    output = centre slice of the stack + residual

With ``modulate_full_resolution`` the two full-resolution blocks are modulated too (by the
half-resolution code): voxel-scale noise is what differs most between DRFs, and it is at
full resolution that the network decides how much of it to keep.

Normalisation: every voxel is in SUV (Bq/ml times the study's ``suv_per_bqml``), so tissue
is O(1) whatever the injected activity and patient weight, and one network serves every
patient. No further scaling: the network is fed, and predicts, SUV. It predicts a residual
on the centre slice, so an untrained network starts as the identity and its output keeps
the input's units.

The vanilla universal variant is the same backbone with plain residual blocks and no
style encoder; the DRF-specific baselines are either variant trained on a single DRF.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.networks.blocks import ConvAct, Downsample, ModulatedResBlock, ResBlock, UpsampleFuse
from model.networks.style import StyleCodes, StyleEncoder, StyleInput, StylePooling

__all__ = ["NetworkConfig", "UniPETNet", "Variant", "count_parameters"]

LEVELS = 4  # total down-sampling factor: inputs are padded to a multiple of this


class Variant(enum.StrEnum):
    """Which generator: UniPET (SAN-modulated) or the vanilla universal backbone."""

    UNIPET = "unipet"
    VANILLA = "vanilla"


@dataclass(frozen=True)
class NetworkConfig:
    """Architecture hyper-parameters; stored in the weights file so it can rebuild the net."""

    variant: Variant = Variant.UNIPET
    context_slices: int = 5
    widths: tuple[int, int, int] = (16, 32, 64)
    code_dim: int = 32
    style_width: int = 16
    style_pooling: StylePooling = StylePooling.SLICE
    style_input: StyleInput = StyleInput.SUV
    demodulate: bool = True
    modulate_full_resolution: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "variant", Variant(self.variant))
        object.__setattr__(self, "style_pooling", StylePooling(self.style_pooling))
        object.__setattr__(self, "style_input", StyleInput(self.style_input))
        for name in ("demodulate", "modulate_full_resolution"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.context_slices < 1 or self.context_slices % 2 == 0:
            raise ValueError(f"context_slices must be odd and >= 1, got {self.context_slices}")
        if len(self.widths) != 3 or min(self.widths) < 1:
            raise ValueError(f"widths must be three positive ints, got {self.widths}")

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON-ready form (the variant as its string value)."""
        out = asdict(self)
        out["variant"] = self.variant.value
        out["style_pooling"] = self.style_pooling.value
        out["style_input"] = self.style_input.value
        out["widths"] = list(self.widths)
        return out


class UniPETNet(nn.Module):
    """The denoising generator; see the module docstring for the diagram."""

    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        c0, c1, c2 = config.widths
        modulated = config.variant is Variant.UNIPET

        def coarse(channels: int) -> nn.Module:
            if modulated:
                return ModulatedResBlock(channels, config.code_dim, config.demodulate)
            return ResBlock(channels)

        def full(channels: int) -> nn.Module:
            return coarse(channels) if config.modulate_full_resolution else ResBlock(channels)

        self.style = (
            StyleEncoder(
                config.context_slices,
                config.style_width,
                config.code_dim,
                config.style_pooling,
                config.style_input,
            )
            if modulated
            else None
        )
        self.stem = ConvAct(config.context_slices, c0)
        self.enc0 = full(c0)
        self.down1 = Downsample(c0, c1)
        self.enc1 = coarse(c1)
        self.down2 = Downsample(c1, c2)
        self.bottleneck1 = coarse(c2)
        self.bottleneck2 = coarse(c2)
        self.up2 = UpsampleFuse(c2, c1, c1)
        self.dec1 = coarse(c1)
        self.up1 = UpsampleFuse(c1, c0, c0)
        self.dec0 = full(c0)
        self.head = nn.Conv2d(c0, 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        if self.head.bias is not None:
            nn.init.zeros_(self.head.bias)

    def style_codes(self, stack: torch.Tensor) -> StyleCodes | None:
        """SAN codes of a (N, S, H, W) stack in SUV; None for the vanilla variant."""
        return None if self.style is None else self.style(stack)

    def forward(self, stack: torch.Tensor, codes: StyleCodes | None = None) -> torch.Tensor:
        """Denoised centre slice (N, 1, H, W) in SUV of a (N, S, H, W) stack in SUV.

        ``codes`` may be given to reuse codes computed on a larger field of view (tiled
        inference computes them once per whole slice); otherwise they come from ``stack``.
        """
        if codes is None:
            codes = self.style_codes(stack)
        half = None if codes is None else codes.half
        quarter = None if codes is None else codes.quarter
        height, width = stack.shape[-2:]
        padded = _pad_to_multiple(stack, LEVELS)
        middle = self.config.context_slices // 2
        centre = padded[:, middle : middle + 1]

        full_code = half if self.config.modulate_full_resolution else None
        skip0 = _block(self.enc0, self.stem(padded), full_code)
        skip1 = self.enc1(self.down1(skip0), half)
        deep = self.bottleneck2(self.bottleneck1(self.down2(skip1), quarter), quarter)
        up1 = self.dec1(self.up2(deep, skip1), half)
        residual: torch.Tensor = self.head(_block(self.dec0, self.up1(up1, skip0), full_code))
        out = centre + residual
        return out[..., :height, :width]


def _block(block: nn.Module, x: torch.Tensor, code: torch.Tensor | None) -> torch.Tensor:
    """Apply a full-resolution block: modulated by ``code`` when it is one, else plain."""
    out: torch.Tensor = block(x) if code is None else block(x, code)
    return out


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad the last two dims on the bottom/right up to a multiple of ``multiple``."""
    pad_h = (-x.shape[-2]) % multiple
    pad_w = (-x.shape[-1]) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
