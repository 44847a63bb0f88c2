"""Image-quality figures of one denoised volume against the full-dose reconstruction.

The reference is the full-dose reconstruction of the same phantom, not the truth: a denoiser
can at best recover what a full-dose scan shows, and the truth has no noise and no resolution
loss, so scores against it mostly measure the scanner. The truth is used only where a figure
is defined against it (lesion SUVmean vs true SUV, NEMA-style contrast recovery).

Global figures (PSNR, NRMSE, SSIM) are computed with scikit-image on SUV clipped to
[0, ``SUV_RANGE``] over the whole volume, so bladder and brain peaks do not set the scale and
every method and DRF shares one data range. Regional figures reuse ``model.simulate.metrics``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from model.simulate import SimulatedStudy
from model.simulate.metrics import lesion_recovery, liver_mask, region_cov, region_mean

__all__ = [
    "SUV_RANGE",
    "CaseMetrics",
    "EvalCase",
    "case_metrics",
    "clipped_suv",
    "psnr_suv",
    "ssim_suv",
]

SUV_RANGE = 20.0
FloatVolume = npt.NDArray[np.float32]


@dataclass(frozen=True)
class EvalCase:
    """One test phantom as the metrics need it: reference, truth, masks, SUV factor."""

    seed: int
    spacing_mm: tuple[float, float, float]
    suv_per_bqml: float
    full_dose_bqml: FloatVolume
    truth_bqml: FloatVolume
    organ_labels: npt.NDArray[np.int16]
    lesion_labels: npt.NDArray[np.int16]
    lesion_suv: dict[int, float]
    lesion_diameter_mm: dict[int, float]

    @classmethod
    def from_study(cls, study: SimulatedStudy) -> EvalCase:
        """The evaluation view of a simulated study."""
        return cls(
            seed=study.seed,
            spacing_mm=study.spacing_mm,
            suv_per_bqml=study.suv_per_bqml,
            full_dose_bqml=study.full_dose_bqml,
            truth_bqml=study.truth_bqml,
            organ_labels=study.organ_labels,
            lesion_labels=study.lesion_labels,
            lesion_suv=dict(study.lesion_suv),
            lesion_diameter_mm=dict(study.lesion_diameter_mm),
        )


@dataclass(frozen=True)
class CaseMetrics:
    """Figures of one output volume; biases in percent, NaN where a phantom has no lesion."""

    psnr_db: float  # vs full dose, clipped SUV, data_range SUV_RANGE; inf when identical
    nrmse: float  # vs full dose, clipped SUV, Euclidean normalisation
    ssim: float  # 3D, vs full dose, clipped SUV, data_range SUV_RANGE
    liver_bias_pct: float  # liver SUVmean vs full dose
    liver_cov_ratio: float  # liver CoV over full-dose liver CoV (1 = full-dose texture)
    lesion_max_bias_pct: float  # median over lesions of SUVmax vs full-dose SUVmax
    lesion_mean_bias_pct: float  # median over lesions of SUVmean vs full-dose SUVmean
    lesion_mean_bias_truth_pct: float  # median over lesions of SUVmean vs true SUV
    lesion_crc: float  # median NEMA-style contrast recovery vs truth (1 = truth)
    n_lesions: int


def clipped_suv(volume_bqml: npt.NDArray[np.floating], suv_per_bqml: float) -> FloatVolume:
    """SUV clipped to [0, SUV_RANGE]: the scale every global figure is computed on."""
    suv = np.asarray(volume_bqml, dtype=np.float32) * np.float32(suv_per_bqml)
    return np.asarray(np.clip(suv, 0.0, SUV_RANGE), dtype=np.float32)


def psnr_suv(image: FloatVolume, reference: FloatVolume) -> float:
    """PSNR (dB) of clipped SUV volumes, data range SUV_RANGE; inf when they are identical.

    scikit-image divides by the MSE, so an exact match would warn and return inf anyway;
    answering inf first keeps runs free of warnings (the test suite turns them into errors).
    """
    if np.array_equal(image, reference):
        return math.inf
    psnr = peak_signal_noise_ratio(reference, image, data_range=SUV_RANGE)  # type: ignore[no-untyped-call]
    return float(psnr)


def ssim_suv(image: FloatVolume, reference: FloatVolume) -> float:
    """3D SSIM of clipped SUV volumes (7-voxel window, or the smallest odd axis if smaller)."""
    win = min(7, *(n if n % 2 else n - 1 for n in image.shape))
    ssim = structural_similarity(  # type: ignore[no-untyped-call]
        reference, image, data_range=SUV_RANGE, win_size=win
    )
    return float(ssim)


def _median_pct(values: list[float]) -> float:
    """Median in percent of relative errors; NaN for an empty list."""
    return 100.0 * float(np.median(values)) if values else math.nan


def _lesion_figures(image_suv: FloatVolume, full_suv: FloatVolume, case: EvalCase) -> list[float]:
    """Median SUVmax and SUVmean bias vs full dose, SUVmean bias vs truth, and lesion count."""
    max_bias, mean_bias, truth_bias = [], [], []
    for label, true_suv in sorted(case.lesion_suv.items()):
        lesion = case.lesion_labels == label
        if not lesion.any():
            continue
        max_bias.append(float(image_suv[lesion].max() / full_suv[lesion].max()) - 1.0)
        mean_bias.append(region_mean(image_suv, lesion) / region_mean(full_suv, lesion) - 1.0)
        truth_bias.append(region_mean(image_suv, lesion) / true_suv - 1.0)
    return [
        _median_pct(max_bias),
        _median_pct(mean_bias),
        _median_pct(truth_bias),
        float(len(max_bias)),
    ]


def case_metrics(output_bqml: npt.NDArray[np.floating], case: EvalCase) -> CaseMetrics:
    """Every figure of one output volume against the case's full-dose reconstruction."""
    factor = np.float32(case.suv_per_bqml)
    image_suv = np.asarray(output_bqml, dtype=np.float32) * factor
    full_suv = case.full_dose_bqml.astype(np.float32) * factor
    image_c = clipped_suv(output_bqml, case.suv_per_bqml)
    full_c = clipped_suv(case.full_dose_bqml, case.suv_per_bqml)
    liver = liver_mask(case.organ_labels, case.lesion_labels)
    recovery = lesion_recovery(
        image_suv / factor,
        case.truth_bqml,
        case.organ_labels,
        case.lesion_labels,
        case.lesion_suv,
        case.lesion_diameter_mm,
        case.suv_per_bqml,
    )
    max_bias, mean_bias, truth_bias, n_lesions = _lesion_figures(image_suv, full_suv, case)
    return CaseMetrics(
        psnr_db=psnr_suv(image_c, full_c),
        nrmse=float(normalized_root_mse(full_c, image_c)),
        ssim=ssim_suv(image_c, full_c),
        liver_bias_pct=100.0 * (region_mean(image_suv, liver) / region_mean(full_suv, liver) - 1),
        liver_cov_ratio=region_cov(image_suv, liver) / region_cov(full_suv, liver),
        lesion_max_bias_pct=max_bias,
        lesion_mean_bias_pct=mean_bias,
        lesion_mean_bias_truth_pct=truth_bias,
        lesion_crc=float(np.median([r.crc for r in recovery])) if recovery else math.nan,
        n_lesions=int(n_lesions),
    )
