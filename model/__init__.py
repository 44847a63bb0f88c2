"""The numbers side of the UniPET node: simulation, networks, training, inference.

Public inference entry point (what ``service/inference.py`` imports)::

    from model import Denoiser, DenoisedVolume, load_denoiser

    denoiser = load_denoiser(weights_path, threads=2, device="auto")
    result = denoiser.denoise(volume_bqml, suv_per_bqml)  # -> DenoisedVolume

The torch-based names are imported on first use (PEP 562), so code that only needs the
simulation or the Gaussian baseline does not pay for importing torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.inference import DenoisedVolume, Denoiser

__all__ = ["DenoisedVolume", "Denoiser", "load_denoiser"]


def load_denoiser(
    weights_path: str | Path,
    *,
    threads: int | None = None,
    device: str = "auto",
    tile_size: int = 256,
    tile_overlap: int = 32,
    batch_slices: int = 8,
) -> Denoiser:
    """Load a trained UniPET network from a safetensors file, once per process.

    Raises:
        model.errors.WeightsError: the file is missing, corrupt or of another architecture.
    """
    from model.inference import Denoiser

    return Denoiser(
        Path(weights_path),
        threads=threads,
        device=device,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        batch_slices=batch_slices,
    )


def __getattr__(name: str) -> object:
    """Import the torch-based public classes lazily."""
    if name in ("DenoisedVolume", "Denoiser"):
        from model import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
