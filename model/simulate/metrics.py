"""Image-quality figures of simulated studies: liver noise, SUV bias, lesion recovery.

Shared by the simulation's own count calibration, its tests and its benchmark, so all three
measure noise the same way: in an eroded liver (no edge partial volume) without lesions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from model.simulate.phantom import ORGAN_LABELS

__all__ = [
    "LesionRecovery",
    "lesion_recovery",
    "liver_mask",
    "log_slope",
    "region_cov",
    "region_mean",
]

BoolVolume = npt.NDArray[np.bool_]
Volume = npt.NDArray[np.float32]


def liver_mask(
    organ_labels: npt.NDArray[np.int16], lesion_labels: npt.NDArray[np.int16]
) -> BoolVolume:
    """Liver eroded by one voxel in-plane, minus lesions grown by one voxel.

    In-plane only, so coarse slices (tiny size: 20 mm) still leave most of the liver.
    """
    liver = organ_labels == ORGAN_LABELS["liver"]
    liver = ndimage.binary_erosion(liver, structure=np.ones((1, 3, 3), dtype=bool))
    lesions = ndimage.binary_dilation(lesion_labels > 0, structure=np.ones((3, 3, 3), dtype=bool))
    return np.asarray(liver & ~lesions)


def region_mean(image: Volume, mask: BoolVolume) -> float:
    """Mean of ``image`` over ``mask`` (float64 accumulation)."""
    return float(image[mask].mean(dtype=np.float64))


def region_cov(image: Volume, mask: BoolVolume) -> float:
    """Coefficient of variation (std / mean) of ``image`` over ``mask``."""
    values = image[mask].astype(np.float64)
    return float(values.std() / values.mean())


def log_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log(y) against log(x): the exponent of a power law."""
    lx = np.log(np.asarray(x, dtype=np.float64))
    ly = np.log(np.asarray(y, dtype=np.float64))
    return float(np.polyfit(lx, ly, 1)[0])


@dataclass(frozen=True)
class LesionRecovery:
    """How much of one lesion's contrast and concentration an image recovers."""

    label: int
    diameter_mm: float
    true_suv: float
    crc: float  # (lesion/background - 1) in the image over the same in the truth
    rc_max: float  # image max over true lesion concentration


def _background_shell(
    lesion: BoolVolume, organ_labels: npt.NDArray[np.int16], lesion_labels: npt.NDArray[np.int16]
) -> BoolVolume:
    """Voxels 2-3 voxels away from the lesion, in its host organ, away from other lesions."""
    host = int(np.bincount(organ_labels[lesion]).argmax())
    near = ndimage.binary_dilation(lesion, iterations=1)
    far = ndimage.binary_dilation(lesion, iterations=3)
    return np.asarray(far & ~near & (organ_labels == host) & (lesion_labels == 0))


def lesion_recovery(
    image: Volume,
    truth: Volume,
    organ_labels: npt.NDArray[np.int16],
    lesion_labels: npt.NDArray[np.int16],
    lesion_suv: dict[int, float],
    lesion_diameter_mm: dict[int, float],
    suv_per_bqml: float,
) -> list[LesionRecovery]:
    """Contrast recovery of every lesion with a usable background shell (NEMA-style CRC)."""
    out = []
    for label, suv in sorted(lesion_suv.items()):
        lesion = lesion_labels == label
        if not lesion.any():
            continue
        shell = _background_shell(lesion, organ_labels, lesion_labels)
        if np.count_nonzero(shell) < 4:
            continue
        true_contrast = region_mean(truth, lesion) / region_mean(truth, shell) - 1.0
        if true_contrast <= 0.05:
            continue
        image_contrast = region_mean(image, lesion) / region_mean(image, shell) - 1.0
        out.append(
            LesionRecovery(
                label=label,
                diameter_mm=lesion_diameter_mm.get(label, math.nan),
                true_suv=suv,
                crc=image_contrast / true_contrast,
                rc_max=float(image[lesion].max()) * suv_per_bqml / suv,
            )
        )
    return out
