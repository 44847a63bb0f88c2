"""Plain data returned by the PET simulation.

Everything here is numpy arrays and numbers: the node wraps these into DICOM on its own side
(``service/synthetic.py``), so the model package never needs to know what a DICOM tag is.

Array convention for every volume: shape ``(z, y, x)``, ``float32``.
- axis 0 (z) runs from the patient's feet to the head (index 0 is the most inferior slice;
  DICOM patient +Z points to the head);
- axis 1 (y) runs from anterior to posterior (DICOM +Y is posterior: image rows go down);
- axis 2 (x) runs from the patient's right to left (DICOM +X is the patient's left).
Activity volumes are in Bq/ml, decay-corrected to the scan start (DICOM DecayCorrection START).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatVolume = npt.NDArray[np.float32]
LabelVolume = npt.NDArray[np.int16]


@dataclass(frozen=True)
class TracerDose:
    """Radiopharmaceutical and patient facts needed to convert Bq/ml to SUV (body weight).

    SUV = C[Bq/ml] * weight_g / (injected_activity_bq * 2 ** (-uptake_time_s / half_life_s)).
    """

    tracer: str  # short name used in tables: "fdg", "psma", "dotatate"
    radiopharmaceutical: str  # e.g. "Fluorodeoxyglucose F^18^"
    radionuclide: str  # e.g. "18F", "68Ga"
    half_life_s: float
    injected_activity_bq: float
    uptake_time_s: float  # injection to scan start
    patient_weight_kg: float
    patient_height_m: float
    patient_sex: str  # "M" or "F"
    patient_age_years: int


@dataclass(frozen=True)
class ScannerModel:
    """Acquisition and reconstruction parameters of one simulated scanner."""

    name: str
    resolution_fwhm_mm: float
    osem_iterations: int
    osem_subsets: int
    postfilter_fwhm_mm: float
    scatter_fraction: float
    randoms_fraction: float
    # Clinical profiles only (size "clinical"): the reconstruction grid and angular sampling
    # the profile draws, and the full-dose liver CoV of its standard acquisition
    # (``model.simulate.scanner.liver_cov_target``). None for the fixed study sizes tiny/small/full.
    matrix: int | None = None
    pixel_mm: float | None = None
    slice_mm: float | None = None
    n_angles: int | None = None
    reference_liver_cov: float | None = None


@dataclass(frozen=True)
class SimulatedStudy:
    """One phantom reconstructed at full dose and at each requested dose reduction factor.

    ``low_dose_bqml[drf]`` has the same geometry and units as ``full_dose_bqml``; its counts
    are a binomial thinning (p = 1/drf) of the full-dose counts, like list-mode subsampling.
    """

    seed: int
    size: str  # "tiny", "small" or "full"
    spacing_mm: tuple[float, float, float]  # (z, y, x): slice spacing, row spacing, column spacing
    full_dose_bqml: FloatVolume
    low_dose_bqml: Mapping[float, FloatVolume]
    truth_bqml: FloatVolume  # noise-free, unblurred activity (for bias metrics)
    organ_labels: LabelVolume  # 0 = outside body; see ORGAN_LABELS in the phantom module
    lesion_labels: LabelVolume  # 0 = no lesion, k = lesion k
    tracer: TracerDose
    scanner: ScannerModel
    lesion_suv: Mapping[int, float] = field(default_factory=dict)  # true SUV per lesion label
    lesion_diameter_mm: Mapping[int, float] = field(default_factory=dict)  # equal-volume sphere
    mu_map_per_cm: FloatVolume | None = None  # 511 keV attenuation map used for AC
    full_dose_counts: int = 0  # prompts (trues + scatter + randoms) in the full-dose data
    low_dose_counts: Mapping[float, int] = field(default_factory=dict)  # prompts per DRF
    noise_free_bqml: FloatVolume | None = None  # OSEM of the expected (noiseless) data
    # Clinical grids are stored cropped in-plane to the body: the row and column of the
    # crop's first pixel in the scanner's full matrix (0, 0 when not cropped).
    crop_origin_yx: tuple[int, int] = (0, 0)

    @property
    def suv_per_bqml(self) -> float:
        """Multiply a Bq/ml value by this to get SUVbw."""
        t = self.tracer
        decayed = t.injected_activity_bq * 2.0 ** (-t.uptake_time_s / t.half_life_s)
        return float(t.patient_weight_kg * 1000.0 / decayed)
