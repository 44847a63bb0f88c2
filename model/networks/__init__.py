"""Networks of the UniPET denoiser: generator (with SAN), vanilla backbone, critic."""

from __future__ import annotations

from model.networks.discriminator import PatchCritic
from model.networks.style import (
    StyleCodes,
    StyleEncoder,
    StyleInput,
    StylePooling,
    feature_statistics,
)
from model.networks.unipet import NetworkConfig, UniPETNet, Variant, count_parameters

__all__ = [
    "NetworkConfig",
    "PatchCritic",
    "StyleCodes",
    "StyleEncoder",
    "StyleInput",
    "StylePooling",
    "UniPETNet",
    "Variant",
    "count_parameters",
    "feature_statistics",
]
