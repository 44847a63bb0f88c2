"""A Gaussian post-filter matched to another image's background noise, by bisection on FWHM.

Contrast recovery falls as noise falls for any linear smoothing, so "the network keeps more
contrast than a Gaussian" only means something at equal noise. For each phantom and DRF the
low-dose input is filtered with the FWHM whose liver CoV equals that of the network output;
the network is then compared with this filter on lesion contrast (``model.evaluation.nema``).

Liver CoV falls monotonically with FWHM, so bisection converges; it stops within
``TOLERANCE`` of the target or after ``MAX_ITERATIONS``. While searching only the liver's
bounding box (plus the kernel's reach) is filtered, which gives the liver the same values as
filtering the whole volume at a fraction of the cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model.baselines import FWHM_PER_SIGMA, gaussian_postfilter
from model.simulate.metrics import region_cov

__all__ = ["MAX_FWHM_MM", "MAX_ITERATIONS", "TOLERANCE", "MatchedGaussian", "match_gaussian"]

MAX_FWHM_MM = 50.0  # past this a filter erases a liver; a target beyond it is reported
MAX_ITERATIONS = 14
TOLERANCE = 0.005  # relative liver CoV error accepted
TRUNCATE_SIGMAS = 4.0  # scipy's gaussian_filter reach

BoolVolume = npt.NDArray[np.bool_]
FloatVolume = npt.NDArray[np.float32]


@dataclass(frozen=True)
class MatchedGaussian:
    """The filtered volume, its FWHM (0: the input itself) and the liver CoV it reached."""

    volume: FloatVolume
    fwhm_mm: float
    liver_cov: float
    converged: bool  # False: the target lies beyond MAX_FWHM_MM


def _liver_box(
    liver: BoolVolume, spacing_mm: Sequence[float], fwhm_mm: float
) -> tuple[slice, slice, slice]:
    """The liver's bounding box grown by the reach of a Gaussian of ``fwhm_mm``."""
    coords = np.nonzero(liver)
    pads = [math.ceil(TRUNCATE_SIGMAS * fwhm_mm / FWHM_PER_SIGMA / s) + 2 for s in spacing_mm]
    box = [
        slice(max(0, int(c.min()) - p), min(n, int(c.max()) + 1 + p))
        for c, p, n in zip(coords, pads, liver.shape, strict=True)
    ]
    return box[0], box[1], box[2]


def match_gaussian(
    volume: FloatVolume,
    spacing_mm: Sequence[float],
    liver: BoolVolume,
    target_cov: float,
    max_fwhm_mm: float = MAX_FWHM_MM,
    max_iterations: int = MAX_ITERATIONS,
) -> MatchedGaussian:
    """The Gaussian filter of ``volume`` whose liver CoV is ``target_cov``.

    A target at or above the input's own CoV gives the input unfiltered (FWHM 0); one below
    what ``max_fwhm_mm`` reaches gives that filter, marked not converged.

    Raises:
        ValueError: an empty liver mask or a target that is not positive and finite.
    """
    if not liver.any():
        raise ValueError("no liver voxels to measure the noise on")
    if not (math.isfinite(target_cov) and target_cov > 0):
        raise ValueError(f"target liver CoV must be positive and finite, got {target_cov}")
    box = _liver_box(liver, spacing_mm, max_fwhm_mm)
    sub, sub_liver = volume[box], liver[box]

    def cov(fwhm_mm: float) -> float:
        return region_cov(gaussian_postfilter(sub, spacing_mm, fwhm_mm), sub_liver)

    input_cov = region_cov(np.asarray(volume, dtype=np.float32), liver)
    if target_cov >= input_cov:
        return MatchedGaussian(np.asarray(volume, dtype=np.float32), 0.0, input_cov, True)
    low, high = 0.0, max_fwhm_mm
    reached = cov(high)
    if reached > target_cov:
        return MatchedGaussian(gaussian_postfilter(volume, spacing_mm, high), high, reached, False)
    fwhm, converged = high, abs(reached / target_cov - 1.0) <= TOLERANCE
    for _ in range(max_iterations):
        if converged:
            break
        fwhm = (low + high) / 2.0
        reached = cov(fwhm)
        converged = abs(reached / target_cov - 1.0) <= TOLERANCE
        if reached > target_cov:
            low = fwhm
        else:
            high = fwhm
    return MatchedGaussian(gaussian_postfilter(volume, spacing_mm, fwhm), fwhm, reached, converged)
