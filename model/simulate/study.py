"""One simulated study: a seeded phantom, acquired at full dose and at each DRF, reconstructed.

Every random draw comes from its own generator seeded by ``(seed, purpose)``, so adding a
DRF, changing the size or adding a lesion type never changes an unrelated draw, and the same
seed always gives bit-identical arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from model.simulate.acquisition import acquire_and_reconstruct
from model.simulate.scanner import draw_scanner
from model.simulate.seeding import Purpose, rng_for
from model.simulate.truth import make_phantom
from model.simulate.types import SimulatedStudy

__all__ = ["simulate_study"]


def _check_drfs(drfs: Sequence[float]) -> list[float]:
    """DRFs as given (they become dict keys); each must be a finite number >= 1."""
    out = list(drfs)
    for drf in out:
        if not np.isfinite(drf) or drf < 1.0:
            raise ValueError(f"dose reduction factor must be finite and >= 1, got {drf!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"dose reduction factors must be distinct, got {out!r}")
    return out


def simulate_study(
    seed: int,
    drfs: Sequence[float],
    size: Literal["tiny", "small", "full"] = "tiny",
    tracer: str = "fdg",
) -> SimulatedStudy:
    """Simulate one phantom at full dose and at every DRF in ``drfs``.

    Args:
        seed: phantom seed (>= 0); the same seed gives bit-identical arrays.
        drfs: dose reduction factors (>= 1); they are the keys of ``low_dose_bqml``.
        size: "tiny" (tests, ~1 s), "small" (training), "full" (clinical matrix).
        tracer: short tracer name from ``model.simulate.tracers.TRACERS``.

    Returns:
        Reconstructions in Bq/ml on one shared grid, with truth, labels and dose facts.
    """
    drf_list = _check_drfs(drfs)
    phantom = make_phantom(seed, size, tracer)
    scanner = draw_scanner(rng_for(seed, Purpose.SCANNER))
    result = acquire_and_reconstruct(phantom, scanner, drf_list, seed, size)
    return SimulatedStudy(
        seed=seed,
        size=size,
        spacing_mm=phantom.grid.spacing_mm,
        full_dose_bqml=result.full_dose_bqml,
        low_dose_bqml=result.low_dose_bqml,
        truth_bqml=phantom.truth_bqml,
        organ_labels=phantom.organ_labels,
        lesion_labels=phantom.lesion_labels,
        tracer=phantom.tracer,
        scanner=scanner,
        lesion_suv=dict(phantom.lesion_suv),
        lesion_diameter_mm=dict(phantom.lesion_diameter_mm),
        mu_map_per_cm=phantom.mu_per_cm,
        full_dose_counts=result.full_dose_counts,
        low_dose_counts=result.low_dose_counts,
    )
