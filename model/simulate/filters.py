"""Gaussian filtering of volumes and sinograms.

Used for the scanner's resolution, the reconstruction post-filter and the smooth scatter
distribution. SciPy's separable filter is several times faster here than a torch conv.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = ["FWHM_PER_SIGMA", "gaussian_filter", "sigma_voxels"]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def sigma_voxels(fwhm_mm: float, spacing_mm: tuple[float, ...]) -> tuple[float, ...]:
    """Per-axis Gaussian sigma in voxels for a FWHM in millimetres."""
    return tuple(fwhm_mm / FWHM_PER_SIGMA / s for s in spacing_mm)


def gaussian_filter(
    array: npt.NDArray[np.float32], sigma: tuple[float, ...], mode: str = "constant"
) -> npt.NDArray[np.float32]:
    """Gaussian filter of the last ``len(sigma)`` axes; leading axes are a batch.

    ``mode`` is "constant" (zeros outside: activity beyond the body is zero) or "nearest"
    (edge values continue: sinogram tails).
    """
    full_sigma = (0.0,) * (array.ndim - len(sigma)) + tuple(sigma)
    out = ndimage.gaussian_filter(
        np.asarray(array, dtype=np.float32), full_sigma, mode=mode, truncate=3.0
    )
    return np.asarray(out, dtype=np.float32)
