"""Simulated scanners: resolution, scatter, randoms, reconstruction settings and image grid.

Sites differ in detector resolution and in how they reconstruct (iterations, subsets,
post-filter, voxel size), which changes the noise texture a denoiser sees. Each phantom draws
one preset and jitters it, so training data covers that spread. Scatter fractions of 30-40 %
and randoms fractions of 10-30 % are typical for whole-body 3D PET (NEMA NU 2 results of
current systems; Bailey DL et al., Positron Emission Tomography, Springer 2005).

Two families:
- ``PRESETS``: the fixed study sizes tiny/small/full (one grid per size; UniPET 1.0.0).
- ``CLINICAL_PROFILES``: study size ``clinical``, where the profile also sets the image grid,
  spanning what clinics send: in-plane pixels 1.65-4.7 mm, slices 1.65-5 mm, matrices
  128-440, system resolution 3-7 mm FWHM, OSEM settings and post-filters as in the vendors'
  published clinical protocols (Siemens mCT 2i21s + 5 mm; Vision 4i5s, 440 matrix, 0-2 mm;
  GE D690 2i24s + 6.4 mm and DMI 3i16s; Philips Vereos 3i15s at 4 and 2 mm; an older BGO
  non-TOF system at 7 mm). Two profiles are held out of training (``held_out``): a 168 matrix
  of 3.4 mm pixels with 2 mm slices (a geometry a real full-dose Siemens series came in), and
  2.5 mm isotropic voxels (the IEC phantom set-up), so tests see voxel sizes never trained on.
  Names say "-like": the settings follow published protocols, not a vendor's data.

Full-dose image quality: ``reference_liver_cov`` is the liver coefficient of variation of the
profile's full-dose reconstruction for a 75 kg patient at the EANM dose (3.5 MBq/kg, 2-3 min
per bed). Clinical whole-body FDG on Siemens TruePoint/mCT at 4 mm voxels gives a liver SNR of
about 8-12 (CoV 0.08-0.12) for such patients (de Groot EH et al., EJNMMI Res 2013;3:63); small
voxels without post-filter are proportionally noisier (noise grows roughly as voxel volume
to the -1/2 for the same counts), which is why the 2 mm and 1.65 mm profiles sit higher. The
same study found that with a dose proportional to body mass (the EANM rule) the liver SNR
falls with mass, a dose proportional to mass squared keeping it constant; so the count level
of each phantom follows ``liver_cov_target``: the reference CoV times sqrt(weight / 75 kg).
The full dose is always the standard acquisition (EANM dose, the protocol's standard time per
bed): a site's shorter protocol is a dose reduction like any other, which is what "DRF 1"
must mean for a DRF estimate to be comparable across sites.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from model.simulate.types import ScannerModel

__all__ = [
    "CLINICAL_PROFILES",
    "PRESETS",
    "ClinicalProfile",
    "draw_clinical_scanner",
    "draw_scanner",
    "liver_cov_target",
    "patient_cov_factor",
]

# name, resolution FWHM mm, iterations, subsets, post-filter FWHM mm, scatter, randoms.
# Subset counts divide every size's number of projection angles (48, 96, 144).
PRESETS: tuple[tuple[str, float, int, int, float, float, float], ...] = (
    ("sim-digital-a", 3.8, 3, 12, 4.0, 0.33, 0.15),
    ("sim-analog-b", 4.8, 2, 24, 6.0, 0.38, 0.25),
    ("sim-digital-c", 3.6, 4, 8, 3.0, 0.30, 0.12),
    ("sim-analog-d", 4.5, 3, 16, 5.0, 0.36, 0.20),
)

REFERENCE_WEIGHT_KG = 75.0
PATIENT_COV_SPREAD = 0.10  # log-normal sigma of full-dose liver CoV between patients


@dataclass(frozen=True)
class ClinicalProfile:
    """One clinical reconstruction protocol: grid, physics, OSEM and full-dose noise level."""

    name: str
    matrix: int
    pixel_mm: float
    slice_mm: tuple[float, ...]  # the protocol's slice thickness options
    resolution_fwhm_mm: float
    osem_iterations: int
    osem_subsets: int
    postfilter_fwhm_mm: tuple[float, ...]  # options; 0 = no post-filter
    scatter_fraction: float
    randoms_fraction: float
    reference_liver_cov: float
    held_out: bool = False

    @property
    def n_angles(self) -> int:
        """Projection angles: about 0.6 per image column, a multiple of the subsets."""
        wanted = max(96, round(0.6 * self.matrix))
        return self.osem_subsets * max(1, round(wanted / self.osem_subsets))


CLINICAL_PROFILES: tuple[ClinicalProfile, ...] = (
    ClinicalProfile("siemens-mct-like", 200, 4.07, (2.03, 3.0, 5.0), 4.6, 2, 21, (5.0,),
                    0.35, 0.20, 0.11),
    ClinicalProfile("siemens-vision-like", 440, 1.65, (1.65,), 3.4, 4, 5, (0.0, 2.0),
                    0.33, 0.15, 0.16),
    ClinicalProfile("ge-d690-like", 192, 3.65, (3.27,), 5.2, 2, 24, (6.4,),
                    0.38, 0.25, 0.10),
    ClinicalProfile("ge-dmi-like", 256, 2.73, (2.79,), 4.0, 3, 16, (5.0, 3.0),
                    0.35, 0.15, 0.12),
    ClinicalProfile("philips-vereos-like", 144, 4.0, (4.0,), 4.2, 3, 15, (0.0, 2.0),
                    0.33, 0.12, 0.11),
    ClinicalProfile("philips-vereos-hd-like", 288, 2.0, (2.0,), 3.8, 3, 15, (0.0, 2.0),
                    0.33, 0.12, 0.17),
    ClinicalProfile("bgo-nontof-like", 128, 4.69, (3.27,), 6.6, 2, 20, (7.0,),
                    0.40, 0.28, 0.12),
    # Held out of training: voxel sizes no training phantom has.
    ClinicalProfile("siemens-168-like", 168, 3.4, (2.0,), 5.0, 3, 21, (4.0,),
                    0.36, 0.20, 0.13, held_out=True),
    ClinicalProfile("iec-2.5mm-like", 256, 2.5, (2.5,), 4.0, 3, 12, (3.0,),
                    0.34, 0.15, 0.14, held_out=True),
)  # fmt: skip


def draw_scanner(rng: np.random.Generator) -> ScannerModel:
    """Pick a fixed-size preset and jitter its physics (within the ranges above) and filter."""
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


def draw_clinical_scanner(rng: np.random.Generator, held_out: bool = False) -> ScannerModel:
    """A clinical profile (a training one, or with ``held_out`` an unseen one), jittered."""
    pool = [p for p in CLINICAL_PROFILES if p.held_out == held_out]
    profile = pool[int(rng.integers(len(pool)))]
    post = float(profile.postfilter_fwhm_mm[int(rng.integers(len(profile.postfilter_fwhm_mm)))])
    slice_mm = float(profile.slice_mm[int(rng.integers(len(profile.slice_mm)))])
    return ScannerModel(
        name=profile.name,
        resolution_fwhm_mm=float(np.clip(profile.resolution_fwhm_mm + rng.uniform(-0.3, 0.3),
                                         3.0, 7.0)),
        osem_iterations=profile.osem_iterations,
        osem_subsets=profile.osem_subsets,
        postfilter_fwhm_mm=post,
        scatter_fraction=float(np.clip(profile.scatter_fraction + rng.uniform(-0.03, 0.03),
                                       0.28, 0.42)),
        randoms_fraction=float(np.clip(profile.randoms_fraction + rng.uniform(-0.04, 0.04),
                                       0.08, 0.32)),
        matrix=profile.matrix,
        pixel_mm=profile.pixel_mm,
        slice_mm=slice_mm,
        n_angles=profile.n_angles,
        reference_liver_cov=profile.reference_liver_cov,
    )  # fmt: skip


def liver_cov_target(scanner: ScannerModel, weight_kg: float, rng: np.random.Generator) -> float:
    """Full-dose liver CoV this phantom's count level is set to (clinical profiles).

    The profile's reference CoV, times sqrt(weight / 75 kg) (EANM dose proportional to mass,
    de Groot 2013), times :func:`patient_cov_factor` drawn from ``rng``.
    """
    if scanner.reference_liver_cov is None:
        raise ValueError(f"scanner {scanner.name!r} is not a clinical profile")
    cov = scanner.reference_liver_cov * math.sqrt(weight_kg / REFERENCE_WEIGHT_KG)
    return float(cov * patient_cov_factor(rng))


def patient_cov_factor(rng: np.random.Generator) -> float:
    """The patient-to-patient factor on a standard acquisition's liver CoV (10 % spread).

    Uptake, blood glucose and bed overlap differ between patients given the same protocol.
    Nothing in the image or the headers tells this factor, so it bounds how well any DRF
    estimate can do: the DRF goes with the CoV squared.
    """
    return math.exp(rng.normal(0.0, PATIENT_COV_SPREAD))
