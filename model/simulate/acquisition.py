"""Counts and reconstructions of one phantom at full dose and at each DRF.

The full-dose count level is calibrated per phantom so its reconstruction has a target liver
CoV, measured on a short pilot reconstruction of the liver slices: 8-12 % for the fixed study
sizes; for clinical profiles the profile's published full-dose level scaled by the patient's
weight (``model.simulate.scanner.liver_cov_target``), so that DRF 1 means a
standard clinical acquisition on that scanner and protocol. Full-dose prompts are Poisson;
each lower dose is a binomial thinning of those very counts with ``p = 1/DRF``, which is
what list-mode subsampling of the full acquisition gives (and so low-dose noise is nested
in full-dose noise, as in clinical low-dose studies made from list mode). DRF 1 is the
full-dose data itself. The noise-free reconstruction (OSEM of the expected, noiseless data
with the same settings) is the reference for lesion bias free of the full dose's own noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from model.simulate.filters import gaussian_filter, sigma_voxels
from model.simulate.metrics import liver_mask, region_cov, region_mean
from model.simulate.osem import osem
from model.simulate.scanner import liver_cov_target, patient_cov_factor
from model.simulate.seeding import Purpose, rng_for
from model.simulate.sinogram import SinogramModel, build_sinogram_model, columns_to_volumes
from model.simulate.truth import Phantom
from model.simulate.types import FloatVolume, ScannerModel

__all__ = [
    "Reconstructions",
    "acquire_and_reconstruct",
    "drawn_patient_cov_factor",
    "has_liver_pilot",
    "noise_target",
    "thin",
]

LIVER_COV_RANGE = (0.08, 0.12)
PILOT_SLICES = 8
PILOT_MEAN_COUNTS = 50.0  # mean trues per sinogram bin in the first pilot
MIN_PILOT_LIVER_VOXELS = 50  # per slice, for a slice to count as a liver slice


@dataclass(frozen=True)
class Reconstructions:
    """Images in Bq/ml and prompt counts at full dose and per DRF."""

    full_dose_bqml: FloatVolume
    low_dose_bqml: dict[float, FloatVolume]
    full_dose_counts: int
    low_dose_counts: dict[float, int]
    calibration: float  # counts per unit of the unit-calibration sinogram model
    target_liver_cov: float
    noise_free_bqml: FloatVolume | None = None


def thin(
    counts: npt.NDArray[np.int64], drf: float, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Keep each count with probability ``1/drf`` (list-mode subsampling)."""
    return rng.binomial(counts, 1.0 / drf)


def _reconstruct(
    model: SinogramModel,
    data: torch.Tensor,
    calibration: float,
    fractions: Sequence[float],
    scanner: ScannerModel,
    spacing_mm: tuple[float, float, float],
    slices: slice = slice(None),
) -> npt.NDArray[np.float32]:
    """OSEM of ``(rows, n_doses, z)`` data, then post-filter: ``(n_doses, z, y, x)`` Bq/ml."""
    mult = (model.mult[:, slices] * calibration).contiguous()
    additive = (model.additive[:, slices] * calibration).contiguous()
    x = osem(model.projector, data, mult, additive, fractions, scanner.osem_iterations)
    volumes = columns_to_volumes(x, model.projector.support)
    del x
    if scanner.postfilter_fwhm_mm > 0.0:  # some protocols ship unfiltered images
        sigma = sigma_voxels(scanner.postfilter_fwhm_mm, spacing_mm)
        for d in range(volumes.shape[0]):
            volumes[d] = gaussian_filter(volumes[d], sigma, mode="nearest")
    return volumes


def has_liver_pilot(phantom: Phantom) -> bool:
    """Whether the phantom has enough liver slices for the count calibration's pilot."""
    mask = liver_mask(phantom.organ_labels, phantom.lesion_labels)
    return int(np.count_nonzero(mask.sum(axis=(1, 2)) >= MIN_PILOT_LIVER_VOXELS)) >= PILOT_SLICES


def _target_cov(phantom: Phantom, scanner: ScannerModel, rng: np.random.Generator) -> float:
    """Full-dose liver CoV to calibrate to: the clinical profile's, or drawn in the range.

    The first draw from ``rng`` (the calibration stream): ``drawn_patient_cov_factor``
    relies on it.
    """
    if scanner.reference_liver_cov is not None:
        return liver_cov_target(scanner, phantom.tracer.patient_weight_kg, rng)
    return float(rng.uniform(*LIVER_COV_RANGE))


def noise_target(target_cov: float, texture_cov: float) -> float:
    """The liver noise (CoV of image minus noise-free image) that gives ``target_cov`` in
    all: the organ's own texture subtracted in quadrature, the noise kept at least 60 % of
    the target where the texture alone comes close to it."""
    return math.sqrt(max(target_cov**2 - texture_cov**2, (0.6 * target_cov) ** 2))


def drawn_patient_cov_factor(scanner: ScannerModel, seed: int) -> float | None:
    """The patient-to-patient CoV factor phantom ``seed`` was simulated with, or None.

    Only clinical profiles draw one (``patient_cov_factor``); it is the first draw of the
    seed's calibration stream, so the seed alone gives it back. The DRF evaluation uses it
    to state the part of the DRF estimate's error no image statistic can remove.
    """
    if scanner.reference_liver_cov is None:
        return None
    return patient_cov_factor(rng_for(seed, Purpose.CALIBRATION))


def _calibrate(
    model: SinogramModel, phantom: Phantom, scanner: ScannerModel, seed: int
) -> tuple[float, float]:
    """Counts scale giving the target full-dose liver CoV (``_target_cov``).

    Noise variance is inversely proportional to counts, so a pilot at a guessed level, its
    noise measured against a noise-free reconstruction of the same slices, tells the scale;
    two rounds absorb the nonlinearity of OSEM at low counts. The target is on the total
    CoV, so the organ's own texture is subtracted in quadrature first.
    """
    rng = rng_for(seed, Purpose.CALIBRATION)
    target = _target_cov(phantom, scanner, rng)
    mask = liver_mask(phantom.organ_labels, phantom.lesion_labels)
    centre = int(np.argmax(mask.sum(axis=(1, 2))))
    lo = max(0, centre - PILOT_SLICES // 2)
    block = slice(lo, min(mask.shape[0], lo + PILOT_SLICES))
    trues = model.trues[:, block]
    expected_unit = trues + model.additive[:, block]
    k = PILOT_MEAN_COUNTS / max(float(trues[trues > 0].mean()), 1e-12)
    for _ in range(2):
        expected = (expected_unit * k).numpy()
        noisy = rng.poisson(expected).astype(np.float32)
        data = torch.from_numpy(np.stack([expected, noisy], axis=1))
        clean_img, noisy_img = _reconstruct(
            model, data, k, [1.0, 1.0], scanner, phantom.grid.spacing_mm, block
        )
        m = mask[block]
        noise = float(np.std((noisy_img - clean_img)[m])) / region_mean(clean_img, m)
        texture = region_cov(clean_img, m)
        k *= (noise / noise_target(target, texture)) ** 2
    return k, target


def acquire_and_reconstruct(
    phantom: Phantom,
    scanner: ScannerModel,
    drfs: Sequence[float],
    seed: int,
    size: str,
    noise_free: bool = False,
    calibration_phantom: Phantom | None = None,
) -> Reconstructions:
    """Calibrate, count, thin and reconstruct the full dose and every DRF in one batch.

    With ``noise_free`` the expected data are reconstructed too (one more column of the
    same OSEM run). A section with too little liver to calibrate on (``has_liver_pilot``)
    is calibrated on ``calibration_phantom``: the same patient and scanner over a section
    that holds the liver (the unit sinogram model is in physical units, so the count scale
    carries over from one section to another).
    """
    model = build_sinogram_model(phantom, scanner, size, seed)
    if calibration_phantom is None:
        k, target = _calibrate(model, phantom, scanner, seed)
    else:
        pilot = build_sinogram_model(calibration_phantom, scanner, size, seed)
        k, target = _calibrate(pilot, calibration_phantom, scanner, seed)
        del pilot
    expected = ((model.trues + model.additive) * k).numpy()
    full = rng_for(seed, Purpose.COUNTS).poisson(expected)
    rows, nz = full.shape
    thinned_drfs = [d for d in drfs if d != 1.0]
    columns = 1 + len(thinned_drfs) + int(noise_free)
    data = torch.empty((rows, columns, nz), dtype=torch.float32)
    data[:, 0] = torch.from_numpy(full.astype(np.float32))
    counts = {}
    for i, drf in enumerate(thinned_drfs, start=1):
        thinned = thin(full, drf, rng_for(seed, Purpose.THINNING, round(drf * 1000)))
        counts[drf] = int(thinned.sum())
        data[:, i] = torch.from_numpy(thinned.astype(np.float32))
    if noise_free:
        data[:, -1] = torch.from_numpy(expected.astype(np.float32))
    del expected
    fractions = [1.0] + [1.0 / d for d in thinned_drfs] + [1.0] * int(noise_free)
    volumes = _reconstruct(model, data, k, fractions, scanner, phantom.grid.spacing_mm)
    low = {drf: volumes[i] for i, drf in enumerate(thinned_drfs, start=1)}
    if 1.0 in drfs:
        low[1.0] = volumes[0]
        counts[1.0] = int(full.sum())
    return Reconstructions(
        full_dose_bqml=volumes[0],
        low_dose_bqml={drf: low[drf] for drf in drfs},
        full_dose_counts=int(full.sum()),
        low_dose_counts={drf: counts[drf] for drf in drfs},
        calibration=k,
        target_liver_cov=target,
        noise_free_bqml=volumes[-1] if noise_free else None,
    )
