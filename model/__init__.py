"""The numbers side of the UniPET node: simulation, networks, training, inference.

Public inference entry point (what ``service/inference.py`` imports)::

    from model import DenoisedVolume, Denoiser, load_denoiser

    denoiser = load_denoiser(weights_path, threads=2, device="auto")
    result = denoiser.denoise(volume_bqml, suv_per_bqml)  # -> DenoisedVolume

Errors: ``model.errors.ModelError`` and its ``WeightsError``.
"""

from __future__ import annotations

from model.errors import ModelError, WeightsError
from model.inference import DenoisedVolume, Denoiser, load_denoiser

__all__ = ["DenoisedVolume", "Denoiser", "ModelError", "WeightsError", "load_denoiser"]
