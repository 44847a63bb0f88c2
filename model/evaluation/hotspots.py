"""False hot spots: local maxima of an image above 3x the liver SUVmean that are no true lesion.

A denoiser that invents a focal uptake is worse than one that leaves noise: a reader may call
it a lesion. Hot spots are counted as local maxima (each voxel at least its 26 neighbours, a
plateau counted once) above ``THRESHOLD_X_LIVER`` times the image's own liver SUVmean, the
usual visual threshold for a suspicious focus in FDG. Maxima near a true lesion are not false;
neither are maxima inside organs whose true uptake is itself above 3x the true liver mean
(bladder, brain, heart): those are physiology, and their count only measures noise texture
in them. Both are grown by the image resolution before they are excluded, since blur moves a
lesion's maximum off its true voxels. The same count on the full dose is the reference.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = ["MARGIN_MM", "THRESHOLD_X_LIVER", "count_hot_spots", "true_hot_mask"]

THRESHOLD_X_LIVER = 3.0
MARGIN_MM = 5.0  # about a clinical system's resolution; at least one voxel on every axis

BoolVolume = npt.NDArray[np.bool_]
Volume = npt.NDArray[np.floating]


def true_hot_mask(
    truth: Volume,
    lesion_labels: npt.NDArray[np.integer],
    liver: BoolVolume,
    spacing_mm: Sequence[float],
    margin_mm: float = MARGIN_MM,
) -> BoolVolume:
    """Where a hot spot is true: lesions and truly hot tissue, grown by ``margin_mm``.

    The margin is at least one voxel along every axis (the largest spacing), so coarse
    grids still forgive a maximum one voxel off.
    """
    hot = lesion_labels > 0
    if liver.any():
        hot |= truth > THRESHOLD_X_LIVER * float(truth[liver].mean(dtype=np.float64))
    if not hot.any():
        return np.zeros(hot.shape, dtype=bool)
    reach = max(margin_mm, *(float(s) for s in spacing_mm))
    distance = ndimage.distance_transform_edt(~hot, sampling=list(spacing_mm))
    return np.asarray(distance <= reach)


def count_hot_spots(image_suv: Volume, liver: BoolVolume, excluded: BoolVolume) -> int:
    """Local maxima above ``THRESHOLD_X_LIVER`` x the image's liver SUVmean outside ``excluded``.

    Raises:
        ValueError: the liver mask is empty (no threshold).
    """
    if not liver.any():
        raise ValueError("no liver voxels: the hot-spot threshold is 3x the liver SUVmean")
    image = np.asarray(image_suv, dtype=np.float32)
    threshold = THRESHOLD_X_LIVER * float(image[liver].mean(dtype=np.float64))
    # Only voxels above the threshold can count, and they are few: compare each with its 26
    # neighbours (edge voxels repeated, as a 3x3x3 maximum filter in "nearest" mode does).
    candidates = np.argwhere((image > threshold) & ~excluded)
    if not len(candidates):
        return 0
    padded = np.pad(image, 1, mode="edge")
    inner = candidates + 1
    values = image[tuple(candidates.T)]
    is_peak = np.ones(len(candidates), dtype=bool)
    for offset in itertools.product((-1, 0, 1), repeat=3):
        z, y, x = (inner + np.asarray(offset)).T
        is_peak &= values >= padded[z, y, x]
    peaks = candidates[is_peak]
    if not len(peaks):
        return 0
    # A plateau of equal maxima is one hot spot: count connected groups in their bounding box.
    low, high = peaks.min(axis=0), peaks.max(axis=0) + 1
    box = np.zeros(high - low, dtype=bool)
    box[tuple((peaks - low).T)] = True
    _, count = ndimage.label(box, structure=np.ones((3, 3, 3), dtype=bool))
    return int(count)
