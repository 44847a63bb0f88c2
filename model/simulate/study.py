"""One simulated study: a seeded phantom, acquired at full dose and at each DRF, reconstructed.

Every random draw comes from its own generator seeded by ``(seed, purpose)``, so adding a
DRF, changing the size or adding a lesion type never changes an unrelated draw, and the same
seed always gives bit-identical arrays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np

from model.simulate.acquisition import acquire_and_reconstruct, has_liver_pilot
from model.simulate.scanner import draw_clinical_scanner, draw_scanner
from model.simulate.seeding import Purpose, rng_for
from model.simulate.truth import make_phantom
from model.simulate.types import FloatVolume, SimulatedStudy

__all__ = ["crop_to_body", "simulate_study"]

#: Share of drawn clinical sections that hold the liver (the rest: neck to thighs).
LIVER_SECTION_SHARE = 0.7


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
    size: Literal["tiny", "small", "full", "clinical"] = "tiny",
    tracer: str = "fdg",
    held_out_scanners: bool = False,
    liver_centred: bool | None = True,
    noise_free: bool = False,
) -> SimulatedStudy:
    """Simulate one phantom at full dose and at every DRF in ``drfs``.

    Args:
        seed: phantom seed (>= 0); the same seed gives bit-identical arrays.
        drfs: dose reduction factors (>= 1); they are the keys of ``low_dose_bqml``
            (DRF 1 is the full-dose image itself).
        size: "tiny" (tests, ~1 s), "small" (training), "full" (clinical matrix), or
            "clinical": a clinical scanner profile's own grid over an axial section, stored
            cropped in-plane to the body.
        tracer: short tracer name from ``model.simulate.tracers.TRACERS``.
        held_out_scanners: for "clinical", draw from the profiles held out of training.
        liver_centred: for "clinical", a section holding the liver (False: anywhere from
            neck to thighs; None: drawn per seed, liver-centred with probability 0.7).
        noise_free: also reconstruct the expected, noiseless data.

    Returns:
        Reconstructions in Bq/ml on one shared grid, with truth, labels and dose facts.
    """
    drf_list = _check_drfs(drfs)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    scanner_rng = rng_for(seed, Purpose.SCANNER)
    scanner = (
        draw_clinical_scanner(scanner_rng, held_out_scanners)
        if size == "clinical"
        else draw_scanner(scanner_rng)
    )
    if liver_centred is None:
        liver_centred = bool(rng_for(seed, Purpose.SECTION, 1).random() < LIVER_SECTION_SHARE)
    phantom = make_phantom(seed, size, tracer, scanner, liver_centred)
    pilot = (
        make_phantom(seed, size, tracer, scanner, liver_centred=True)
        if size == "clinical" and not has_liver_pilot(phantom)
        else None
    )
    result = acquire_and_reconstruct(phantom, scanner, drf_list, seed, size, noise_free, pilot)
    study = SimulatedStudy(
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
        noise_free_bqml=result.noise_free_bqml,
    )
    return crop_to_body(study) if size == "clinical" else study


def crop_to_body(study: SimulatedStudy, margin_px: int = 6, minimum_px: int = 72) -> SimulatedStudy:
    """The study cut in-plane to the body's bounding box (plus a margin, at least
    ``minimum_px`` wide so training patches fit); ``crop_origin_yx`` says where it was."""
    body = (study.organ_labels > 0).any(axis=0)
    ys, xs = np.nonzero(body)
    n_y, n_x = body.shape
    window = []
    for lo, hi, n in ((ys.min(), ys.max(), n_y), (xs.min(), xs.max(), n_x)):
        start, stop = max(0, int(lo) - margin_px), min(n, int(hi) + 1 + margin_px)
        grow = max(0, min(minimum_px, n) - (stop - start))
        start = max(0, start - grow // 2)
        stop = min(n, max(stop, start + min(minimum_px, n)))
        window.append(slice(start, stop))
    cut = (slice(None), window[0], window[1])

    def crop(volume: FloatVolume | None) -> FloatVolume | None:
        return None if volume is None else np.ascontiguousarray(volume[cut])

    return dataclasses.replace(
        study,
        full_dose_bqml=np.ascontiguousarray(study.full_dose_bqml[cut]),
        low_dose_bqml={d: np.ascontiguousarray(v[cut]) for d, v in study.low_dose_bqml.items()},
        truth_bqml=np.ascontiguousarray(study.truth_bqml[cut]),
        organ_labels=np.ascontiguousarray(study.organ_labels[cut]),
        lesion_labels=np.ascontiguousarray(study.lesion_labels[cut]),
        mu_map_per_cm=crop(study.mu_map_per_cm),
        noise_free_bqml=crop(study.noise_free_bqml),
        crop_origin_yx=(window[0].start, window[1].start),
    )
