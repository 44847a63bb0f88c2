"""Per-lesion SUVmax and SUVpeak (PERCIST), measured on the voxel grid with its own spacing.

SUVpeak is the highest mean SUV in a 1 cm3 sphere (radius 6.2 mm) placed anywhere in the
lesion (Wahl RL et al., J Nucl Med 2009;50:122S, PERCIST 1.0). Unlike SUVmax it averages over
a fixed volume, so it is far less sensitive to the noise of a single voxel: a denoiser can lower
SUVmax by removing noise alone, while SUVpeak moves only when the lesion's uptake does.

The sphere is drawn on the image's own grid: each voxel weighs the fraction of its volume
inside the sphere (supersampled), so anisotropic voxels (2 mm slices under 4 mm pixels) and
voxels larger than the sphere (the test size's 20 mm slices) still give a mean over 1 cm3 as
closely as the grid allows. Sphere centres are searched over all of the lesion's voxels.
Searching a margin around it as well would let the sphere sit on hot neighbouring tissue
(a lung lesion beside the heart, a node beside the bladder) and report that tissue's uptake;
the sphere still reaches past the rim of a lesion smaller than 1 cm3, as in PERCIST.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = [
    "PEAK_RADIUS_MM",
    "LesionSite",
    "lesion_sites",
    "sphere_kernel",
    "suv_max",
    "suv_peak",
]

PEAK_VOLUME_ML = 1.0
PEAK_RADIUS_MM = (3.0 * PEAK_VOLUME_ML * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)  # 6.20 mm
SUPERSAMPLE = 5  # sub-voxel samples per axis for the sphere's partial-volume weights

BoolVolume = npt.NDArray[np.bool_]
Volume = npt.NDArray[np.floating]
Kernel = npt.NDArray[np.float64]
Box = tuple[slice, slice, slice]


@lru_cache(maxsize=16)
def sphere_kernel(
    spacing_mm: tuple[float, float, float], radius_mm: float = PEAK_RADIUS_MM
) -> Kernel:
    """Weights of a sphere centred on a voxel: each voxel's volume fraction inside, summing to 1.

    Raises:
        ValueError: a spacing or the radius is not positive.
    """
    if radius_mm <= 0 or any(s <= 0 for s in spacing_mm):
        raise ValueError(f"radius and spacing must be positive, got {radius_mm}, {spacing_mm}")
    # A voxel k steps away touches the sphere while k * s - s / 2 < r.
    half = [max(0, math.ceil(radius_mm / s - 0.5)) for s in spacing_mm]
    sub = (np.arange(SUPERSAMPLE) + 0.5) / SUPERSAMPLE - 0.5
    axes = [
        ((np.arange(-h, h + 1)[:, None] + sub[None, :]) * s).ravel()
        for h, s in zip(half, spacing_mm, strict=True)
    ]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    inside = (z**2 + y**2 + x**2 <= radius_mm**2).astype(np.float64)
    shape = [2 * h + 1 for h in half]
    fractions = inside.reshape(shape[0], SUPERSAMPLE, shape[1], SUPERSAMPLE, shape[2], SUPERSAMPLE)
    weights = fractions.mean(axis=(1, 3, 5))
    return np.asarray(weights / weights.sum(), dtype=np.float64)


@dataclass(frozen=True)
class LesionSite:
    """Where one lesion is measured: a box around it with room for the SUVpeak sphere, and
    the lesion's voxels in box coordinates (also where the sphere may be centred)."""

    label: int
    diameter_mm: float
    box: Box
    lesion: BoolVolume


def _box(mask: BoolVolume, pad: Sequence[int]) -> Box:
    """Bounding box of ``mask`` grown by ``pad`` voxels per axis, clipped to the volume."""
    coords = np.nonzero(mask)
    lo = [max(0, int(c.min()) - p) for c, p in zip(coords, pad, strict=True)]
    hi = [min(n, int(c.max()) + 1 + p) for c, n, p in zip(coords, mask.shape, pad, strict=True)]
    return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))


def lesion_sites(
    lesion_labels: npt.NDArray[np.integer],
    lesion_diameter_mm: dict[int, float],
    spacing_mm: tuple[float, float, float],
) -> list[LesionSite]:
    """A site per lesion label present in ``lesion_labels`` (ascending label order)."""
    pad = [k // 2 for k in sphere_kernel(_spacing(spacing_mm)).shape]
    sites = []
    for label in sorted(int(v) for v in np.unique(lesion_labels) if v > 0):
        mask = lesion_labels == label
        box = _box(mask, pad)
        diameter = lesion_diameter_mm.get(label, math.nan)
        sites.append(LesionSite(label, float(diameter), box, mask[box]))
    return sites


def _spacing(spacing_mm: Sequence[float]) -> tuple[float, float, float]:
    """Spacing as three plain floats (the kernel cache's key; files give lists or numpy floats)."""
    z, y, x = (float(s) for s in spacing_mm)
    return z, y, x


def suv_max(image_suv: Volume, site: LesionSite) -> float:
    """Highest voxel SUV inside the lesion."""
    return float(image_suv[site.box][site.lesion].max())


def suv_peak(image_suv: Volume, site: LesionSite, spacing_mm: tuple[float, float, float]) -> float:
    """Highest mean SUV in the 1 cm3 sphere centred on any of the lesion's voxels (PERCIST).

    The box holds a sphere radius around every lesion voxel, so only where the box meets
    the volume's edge does the mean see replicated edge voxels.
    """
    kernel = sphere_kernel(_spacing(spacing_mm))
    local = ndimage.correlate(
        np.asarray(image_suv[site.box], dtype=np.float64), kernel, mode="nearest"
    )
    return float(local[site.lesion].max())
