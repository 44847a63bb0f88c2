"""Acquisition and reconstruction of one phantom at full dose and at each DRF."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from model.simulate.seeding import Purpose, rng_for
from model.simulate.truth import Phantom
from model.simulate.types import FloatVolume, ScannerModel

__all__ = ["Reconstructions", "acquire_and_reconstruct"]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True)
class Reconstructions:
    """Images in Bq/ml and prompt counts at full dose and per DRF."""

    full_dose_bqml: FloatVolume
    low_dose_bqml: dict[float, FloatVolume]
    full_dose_counts: int
    low_dose_counts: dict[float, int]


def _blur(volume: FloatVolume, fwhm_mm: float, spacing_mm: tuple[float, float, float]) -> FloatVolume:
    """3D Gaussian blur with a FWHM in millimetres."""
    sigma = [fwhm_mm / FWHM_PER_SIGMA / s for s in spacing_mm]
    return ndimage.gaussian_filter(volume, sigma, mode="constant").astype(np.float32)


def acquire_and_reconstruct(
    phantom: Phantom, scanner: ScannerModel, drfs: Sequence[float], seed: int
) -> Reconstructions:
    """Image-domain stand-in: blur, Poisson counts, binomial thinning, rescale, post-filter."""
    spacing = phantom.grid.spacing_mm
    blurred = _blur(phantom.truth_bqml, scanner.resolution_fwhm_mm, spacing)
    liver_mean = float(blurred[phantom.organ_labels == 8].mean())
    scale = 100.0 / liver_mean
    counts = rng_for(seed, Purpose.COUNTS).poisson(blurred * scale)
    post = scanner.postfilter_fwhm_mm
    full = _blur((counts / scale).astype(np.float32), post, spacing)
    low: dict[float, FloatVolume] = {}
    low_counts: dict[float, int] = {}
    for drf in drfs:
        rng = rng_for(seed, Purpose.THINNING, round(drf * 1000))
        thinned = rng.binomial(counts, 1.0 / drf)
        low[drf] = _blur((thinned * (drf / scale)).astype(np.float32), post, spacing)
        low_counts[drf] = int(thinned.sum())
    return Reconstructions(full, low, int(counts.sum()), low_counts)
