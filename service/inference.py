"""The one door between the DICOM node and the model package (DESIGN.md section 2).

Everything the node needs from ``model/`` comes through here: a ``Denoiser`` that takes a
(z, y, x) volume in Bq/ml and returns one, with the ``AlgorithmIdentity`` that the writer puts
into the DICOM provenance; and the PET simulation behind ``unipet-node simulate``. No other
module in ``service/`` imports ``model``.

Backends: ``gaussian`` is the classical post-filter, labelled as exactly that (never as
UniPET). ``unipet`` needs trained weights; ``auto`` takes UniPET when its weights are present
and the Gaussian filter otherwise, and says which in the provenance.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from model.baselines import gaussian_postfilter
from model.simulate import simulate_study
from service.config import ModelSettings
from service.errors import ConfigError, InferenceError
from service.provenance import AlgorithmIdentity

if TYPE_CHECKING:
    from model.simulate.types import SimulatedStudy

__all__ = [
    "DenoiseResult",
    "Denoiser",
    "GaussianDenoiser",
    "SimulatedStudy",
    "load_denoiser",
    "node_version",
    "simulate_study",
]

log = logging.getLogger(__name__)


def node_version() -> str:
    """Installed version of the node package."""
    try:
        return version("unipet-node")
    except PackageNotFoundError:
        return "0.0.0"


@dataclass(frozen=True)
class DenoiseResult:
    """A denoised volume and who made it."""

    volume_bqml: npt.NDArray[np.float32]
    algorithm: AlgorithmIdentity
    drf_estimate: float | None
    seconds: float
    device: str


class Denoiser(Protocol):
    """What the worker calls: loaded once per process, then ``denoise`` per series."""

    algorithm: AlgorithmIdentity
    device: str

    def denoise(
        self, volume_bqml: npt.NDArray[np.float32], spacing_mm: Sequence[float]
    ) -> DenoiseResult:
        """Denoise one (z, y, x) volume in Bq/ml."""
        ...


class GaussianDenoiser:
    """The scanner-style Gaussian post-filter, honestly labelled as such."""

    def __init__(self, fwhm_mm: float) -> None:
        self.fwhm_mm = fwhm_mm
        self.device = "cpu"
        canonical = f"gaussian-postfilter;fwhm_mm={fwhm_mm:.3f}"
        self.algorithm = AlgorithmIdentity(
            name="Gaussian post-filter",
            version=node_version(),
            weights_sha256=hashlib.sha256(canonical.encode()).hexdigest(),
            description=f"3D Gaussian post-filter, FWHM {fwhm_mm:g} mm (no neural network)",
            parameters={"fwhm_mm": f"{fwhm_mm:g}"},
        )

    def denoise(
        self, volume_bqml: npt.NDArray[np.float32], spacing_mm: Sequence[float]
    ) -> DenoiseResult:
        """Filter the volume; quantitation (regional means) is preserved by construction."""
        start = time.perf_counter()
        if volume_bqml.ndim != 3 or not np.isfinite(volume_bqml).all():
            raise InferenceError(f"expected a finite 3D volume, got shape {volume_bqml.shape}")
        filtered = gaussian_postfilter(volume_bqml, spacing_mm, self.fwhm_mm)
        return DenoiseResult(
            volume_bqml=filtered,
            algorithm=self.algorithm,
            drf_estimate=None,
            seconds=time.perf_counter() - start,
            device=self.device,
        )


def load_denoiser(settings: ModelSettings) -> Denoiser:
    """Build the configured denoiser once per process.

    Raises:
        ConfigError: UniPET was asked for explicitly but no trained weights are available.
    """
    if settings.backend == "unipet":
        raise ConfigError(
            "model.backend: 'unipet' needs trained weights, which this build does not ship yet; "
            "use 'auto' or 'gaussian'"
        )
    if settings.backend == "auto":
        log.info("denoiser_backend backend=gaussian reason=no trained UniPET weights shipped")
    return GaussianDenoiser(settings.gaussian_fwhm_mm)
