"""A Gaussian post-filter matched to another image's background noise, by bisection on FWHM.

Contrast recovery falls as noise falls for any linear smoothing, so "the network keeps more
contrast than a Gaussian" only means something at equal noise. For each phantom and DRF the
low-dose input is filtered with the FWHM whose liver CoV equals that of the network output;
the network is then compared with this filter on lesion contrast (``model.evaluation.nema``).

Liver CoV first falls with FWHM (noise is averaged out), then rises again once the filter
is wide enough to carry neighbouring organs' activity across the liver. So the FWHM is
bracketed on a rising grid (``SCAN_FWHM_MM``) that stops where the CoV stops falling, then
bisected within the bracket; it stops within ``TOLERANCE`` of the target or after
``MAX_ITERATIONS``. A target below the lowest CoV any Gaussian reaches (an output smoother
than the liver's own texture allows a linear filter to be) gives that lowest-CoV filter,
marked not converged. While searching only the liver's bounding box (plus the kernel's
reach) is filtered, which gives the liver the same values as filtering the whole volume at
a fraction of the cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from model.baselines import FWHM_PER_SIGMA, gaussian_postfilter
from model.simulate.metrics import region_cov

__all__ = [
    "MAX_FWHM_MM",
    "MAX_ITERATIONS",
    "SCAN_FWHM_MM",
    "TOLERANCE",
    "MatchedGaussian",
    "match_gaussian",
]

SCAN_FWHM_MM = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0)
MAX_FWHM_MM = SCAN_FWHM_MM[-1]  # past this a filter erases a liver
MAX_ITERATIONS = 10
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
    max_iterations: int = MAX_ITERATIONS,
) -> MatchedGaussian:
    """The Gaussian filter of ``volume`` whose liver CoV is ``target_cov``.

    A target at or above the input's own CoV gives the input unfiltered (FWHM 0); one no
    Gaussian reaches gives the filter of lowest liver CoV, marked not converged.

    Raises:
        ValueError: an empty liver mask or a target that is not positive and finite.
    """
    if not liver.any():
        raise ValueError("no liver voxels to measure the noise on")
    if not (math.isfinite(target_cov) and target_cov > 0):
        raise ValueError(f"target liver CoV must be positive and finite, got {target_cov}")
    box = _liver_box(liver, spacing_mm, MAX_FWHM_MM)
    sub, sub_liver = volume[box], liver[box]

    def cov(fwhm_mm: float) -> float:
        return region_cov(gaussian_postfilter(sub, spacing_mm, fwhm_mm), sub_liver)

    def result(fwhm_mm: float, reached: float, converged: bool) -> MatchedGaussian:
        if fwhm_mm == 0.0:
            return MatchedGaussian(np.asarray(volume, dtype=np.float32), 0.0, reached, converged)
        filtered = gaussian_postfilter(volume, spacing_mm, fwhm_mm)
        return MatchedGaussian(filtered, fwhm_mm, reached, converged)

    input_cov = region_cov(np.asarray(volume, dtype=np.float32), liver)
    if target_cov >= input_cov:
        return result(0.0, input_cov, True)
    low, low_cov = 0.0, input_cov
    for high in SCAN_FWHM_MM:
        high_cov = cov(high)
        if high_cov <= target_cov:
            return _bisect(
                cov, (low, low_cov), (high, high_cov), target_cov, max_iterations, result
            )
        if high_cov >= low_cov:  # the CoV stopped falling: the target is out of reach
            break
        low, low_cov = high, high_cov
    return result(low, low_cov, False)


def _bisect(
    cov: Callable[[float], float],
    low: tuple[float, float],
    high: tuple[float, float],
    target_cov: float,
    max_iterations: int,
    result: Callable[[float, float, bool], MatchedGaussian],
) -> MatchedGaussian:
    """Bisection of a bracket (FWHM, CoV) with CoV above the target at ``low``, not at ``high``."""
    (low_fwhm, low_cov), (high_fwhm, high_cov) = low, high
    for _ in range(max_iterations):
        if abs(high_cov / target_cov - 1.0) <= TOLERANCE:
            break
        middle = (low_fwhm + high_fwhm) / 2.0
        middle_cov = cov(middle)
        if middle_cov > target_cov:
            low_fwhm, low_cov = middle, middle_cov
        else:
            high_fwhm, high_cov = middle, middle_cov
    # The bracket end nearer the target, in relative CoV.
    if abs(low_cov / target_cov - 1.0) < abs(high_cov / target_cov - 1.0):
        high_fwhm, high_cov = low_fwhm, low_cov
    return result(high_fwhm, high_cov, abs(high_cov / target_cov - 1.0) <= TOLERANCE)
