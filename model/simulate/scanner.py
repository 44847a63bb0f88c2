"""Simulated scanners: resolution, scatter, randoms and reconstruction settings.

Sites differ in detector resolution and in how they reconstruct (iterations, subsets,
post-filter), which changes the noise texture a denoiser sees. Each phantom draws one of
these presets and jitters it, so training data covers that spread. Scatter fractions of
30-40 % and randoms fractions of 10-30 % are typical for whole-body 3D PET (NEMA NU 2
results of current systems; Bailey DL et al., Positron Emission Tomography, Springer 2005).
"""

from __future__ import annotations

import numpy as np

from model.simulate.types import ScannerModel

__all__ = ["PRESETS", "draw_scanner"]

# name, resolution FWHM mm, iterations, subsets, post-filter FWHM mm, scatter, randoms.
# Subset counts divide every size's number of projection angles (48, 96, 144).
PRESETS: tuple[tuple[str, float, int, int, float, float, float], ...] = (
    ("sim-digital-a", 3.8, 3, 12, 4.0, 0.33, 0.15),
    ("sim-analog-b", 4.8, 2, 24, 6.0, 0.38, 0.25),
    ("sim-digital-c", 3.6, 4, 8, 3.0, 0.30, 0.12),
    ("sim-analog-d", 4.5, 3, 16, 5.0, 0.36, 0.20),
)


def draw_scanner(rng: np.random.Generator) -> ScannerModel:
    """Pick a preset and jitter its physics (within the ranges above) and post-filter."""
    name, fwhm, iters, subsets, post, sf, rf = PRESETS[int(rng.integers(len(PRESETS)))]
    return ScannerModel(
        name=name,
        resolution_fwhm_mm=float(np.clip(fwhm + rng.uniform(-0.2, 0.2), 3.5, 5.0)),
        osem_iterations=iters,
        osem_subsets=subsets,
        postfilter_fwhm_mm=float(max(post + rng.uniform(-1.0, 1.0), 2.0)),
        scatter_fraction=float(np.clip(sf + rng.uniform(-0.03, 0.03), 0.30, 0.40)),
        randoms_fraction=float(np.clip(rf + rng.uniform(-0.05, 0.05), 0.10, 0.30)),
    )
