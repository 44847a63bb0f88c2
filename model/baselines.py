"""Classical denoisers the network is compared against (and the node's fallback backend).

``gaussian_postfilter`` is what scanners themselves apply after OSEM: an isotropic Gaussian in
millimetres, converted to voxels per axis so anisotropic voxels are filtered isotropically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def gaussian_postfilter(
    volume: npt.NDArray[np.floating], spacing_mm: Sequence[float], fwhm_mm: float
) -> npt.NDArray[np.float32]:
    """Isotropic 3D Gaussian filter of ``fwhm_mm`` on a (z, y, x) volume with ``spacing_mm``.

    Mass is preserved (the kernel sums to one; borders are mirrored), so mean activity in a
    large region, and therefore SUVmean, is unchanged.
    """
    if fwhm_mm <= 0:
        raise ValueError(f"fwhm_mm must be positive, got {fwhm_mm}")
    if len(spacing_mm) != volume.ndim:
        raise ValueError(f"spacing {tuple(spacing_mm)} does not match volume shape {volume.shape}")
    sigma_voxels = [fwhm_mm / FWHM_PER_SIGMA / float(s) for s in spacing_mm]
    filtered = ndimage.gaussian_filter(volume.astype(np.float32), sigma=sigma_voxels, mode="mirror")
    return np.asarray(filtered, dtype=np.float32)
