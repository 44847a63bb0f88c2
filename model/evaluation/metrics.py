"""Image-quality figures of one denoised volume against the full-dose and noise-free images.

The main reference is the full-dose reconstruction of the same phantom, not the truth: a
denoiser can at best recover what a full-dose scan shows, and the truth has no noise and no
resolution loss, so scores against it mostly measure the scanner. Lesions are also scored
against the noise-free reconstruction (OSEM of the noiseless data, same scanner settings),
which has the full dose's resolution without its noise: a lesion's full-dose SUVmax is
itself lifted by noise, so "bias vs full dose" partly rewards keeping noise. The truth is
used only where a figure is defined against it (lesion SUVmean vs true SUV, NEMA contrast).

Global figures (PSNR, NRMSE, SSIM) are computed with scikit-image on SUV clipped to
[0, ``SUV_RANGE``] over the whole volume, so bladder and brain peaks do not set the scale and
every method and DRF shares one data range. Everything that depends only on the phantom
(masks, lesion ROIs, the references' own figures) is found once per phantom by
:func:`prepare_case`; :func:`score` then measures any number of outputs against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from model.evaluation.hotspots import count_hot_spots, true_hot_mask
from model.evaluation.lesions import LesionSite, lesion_sites, suv_max, suv_peak
from model.evaluation.nema import (
    ContrastSite,
    background_variability,
    contrast_recovery,
    contrast_sites,
    near_contrast_recovery,
)
from model.simulate import SimulatedStudy
from model.simulate.metrics import liver_mask, region_cov, region_mean

__all__ = [
    "SUV_RANGE",
    "CaseMetrics",
    "EvalCase",
    "LesionRecord",
    "PreparedCase",
    "case_metrics",
    "clipped_suv",
    "prepare_case",
    "psnr_suv",
    "score",
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
    noise_free_bqml: FloatVolume | None = None  # OSEM of noiseless data; None when not made

    @classmethod
    def from_study(cls, study: SimulatedStudy) -> EvalCase:
        """The evaluation view of a simulated study, with its noise-free reconstruction if any."""
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
            noise_free_bqml=study.noise_free_bqml,
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
    lesion_crc: float  # median contrast recovery vs truth, shell 2-3 voxels out (as 1.0)
    n_lesions: int
    hottest_lesion_max_bias_pct: float = math.nan  # SUVmax of the full dose's hottest lesion
    false_hot_spots: float = math.nan  # local maxima > 3x liver SUVmean off true hot spots


@dataclass(frozen=True)
class LesionRecord:
    """One lesion in one output volume; biases in percent, NaN where a reference is missing."""

    label: int
    diameter_mm: float
    suv_max: float
    suv_peak: float  # 1 cm3 sphere, PERCIST (``model.evaluation.lesions``)
    max_bias_fd_pct: float  # SUVmax vs the full dose's
    peak_bias_fd_pct: float  # SUVpeak vs the full dose's
    max_bias_nf_pct: float  # SUVmax vs the noise-free reconstruction's
    peak_bias_nf_pct: float  # SUVpeak vs the noise-free reconstruction's
    contrast_recovery: float  # NEMA CR vs truth, shell 10-20 mm out; NaN where unusable
    background_variability: float  # NEMA BV at the lesion's size; NaN when too few ROIs fit


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


def _pct(value: float, reference: float | None) -> float:
    """``value / reference - 1`` in percent; NaN without a reference."""
    return math.nan if reference is None else 100.0 * (value / reference - 1.0)


@dataclass(frozen=True)
class _Reference:
    """SUVmax and SUVpeak of every lesion in one reference image."""

    max_suv: dict[int, float]
    peak_suv: dict[int, float]


def _reference(image_suv: FloatVolume, sites: tuple[LesionSite, ...], case: EvalCase) -> _Reference:
    """The lesion figures of a reference image (full dose or noise-free)."""
    return _Reference(
        {s.label: suv_max(image_suv, s) for s in sites},
        {s.label: suv_peak(image_suv, s, case.spacing_mm) for s in sites},
    )


@dataclass(frozen=True)
class PreparedCase:
    """A phantom ready to score outputs on: masks, lesion ROIs and the references' figures."""

    case: EvalCase
    full_suv: FloatVolume
    full_clipped: FloatVolume
    liver: npt.NDArray[np.bool_]
    sites: tuple[LesionSite, ...]  # lesions with a true SUV, for SUVmax/SUVpeak/SUVmean
    contrast: dict[int, ContrastSite]  # lesions with a usable background (far or near)
    full_dose: _Reference
    noise_free: _Reference | None
    hot_excluded: npt.NDArray[np.bool_]  # true lesions and hot tissue, grown by resolution

    @property
    def hottest_label(self) -> int | None:
        """The lesion with the highest full-dose SUVmax (the full-dose-in check's lesion)."""
        figures = self.full_dose.max_suv
        return max(figures, key=lambda label: figures[label]) if figures else None


def prepare_case(case: EvalCase) -> PreparedCase:
    """Everything about a phantom that does not depend on the output being scored."""
    factor = np.float32(case.suv_per_bqml)
    full_suv = case.full_dose_bqml.astype(np.float32) * factor
    liver = liver_mask(case.organ_labels, case.lesion_labels)
    all_sites = lesion_sites(case.lesion_labels, case.lesion_diameter_mm, case.spacing_mm)
    sites = tuple(s for s in all_sites if s.label in case.lesion_suv)
    contrast = contrast_sites(
        case.truth_bqml,
        case.organ_labels,
        case.lesion_labels,
        case.lesion_diameter_mm,
        case.spacing_mm,
    )
    noise_free = None
    if case.noise_free_bqml is not None:
        noise_free = _reference(case.noise_free_bqml.astype(np.float32) * factor, sites, case)
    return PreparedCase(
        case=case,
        full_suv=full_suv,
        full_clipped=clipped_suv(case.full_dose_bqml, case.suv_per_bqml),
        liver=liver,
        sites=sites,
        contrast={c.label: c for c in contrast if c.label in case.lesion_suv},
        full_dose=_reference(full_suv, sites, case),
        noise_free=noise_free,
        hot_excluded=true_hot_mask(case.truth_bqml, case.lesion_labels, liver, case.spacing_mm),
    )


def _lesion_record(
    image_suv: FloatVolume, site: LesionSite, prepared: PreparedCase
) -> LesionRecord:
    """Every per-lesion figure of one output volume."""
    label, spacing = site.label, prepared.case.spacing_mm
    peak, top = suv_peak(image_suv, site, spacing), suv_max(image_suv, site)
    nf = prepared.noise_free
    nema = prepared.contrast.get(label)
    return LesionRecord(
        label=label,
        diameter_mm=site.diameter_mm,
        suv_max=top,
        suv_peak=peak,
        max_bias_fd_pct=_pct(top, prepared.full_dose.max_suv[label]),
        peak_bias_fd_pct=_pct(peak, prepared.full_dose.peak_suv[label]),
        max_bias_nf_pct=_pct(top, nf.max_suv[label] if nf else None),
        peak_bias_nf_pct=_pct(peak, nf.peak_suv[label] if nf else None),
        contrast_recovery=contrast_recovery(image_suv, nema) if nema else math.nan,
        background_variability=(
            background_variability(image_suv, nema.bv_rois) if nema else math.nan
        ),
    )


def _lesion_summary(
    image_suv: FloatVolume, prepared: PreparedCase, records: tuple[LesionRecord, ...]
) -> dict[str, float]:
    """The per-phantom lesion medians of :class:`CaseMetrics`."""
    case, full_suv = prepared.case, prepared.full_suv
    mean_bias, truth_bias = [], []
    for site in prepared.sites:
        image_mean = region_mean(image_suv[site.box], site.lesion)
        mean_bias.append(image_mean / region_mean(full_suv[site.box], site.lesion) - 1.0)
        truth_bias.append(image_mean / case.lesion_suv[site.label] - 1.0)
    near = [near_contrast_recovery(image_suv, site) for site in prepared.contrast.values()]
    recoveries = [value for value in near if math.isfinite(value)]
    hottest = prepared.hottest_label
    return {
        "lesion_max_bias_pct": _median_pct([r.max_bias_fd_pct / 100.0 for r in records]),
        "lesion_mean_bias_pct": _median_pct(mean_bias),
        "lesion_mean_bias_truth_pct": _median_pct(truth_bias),
        "lesion_crc": float(np.median(recoveries)) if recoveries else math.nan,
        "hottest_lesion_max_bias_pct": next(
            (r.max_bias_fd_pct for r in records if r.label == hottest), math.nan
        ),
    }


def score(
    output_bqml: npt.NDArray[np.floating], prepared: PreparedCase
) -> tuple[CaseMetrics, tuple[LesionRecord, ...]]:
    """Every figure of one output volume, and its per-lesion records."""
    case = prepared.case
    image_suv = np.asarray(output_bqml, dtype=np.float32) * np.float32(case.suv_per_bqml)
    image_c = clipped_suv(output_bqml, case.suv_per_bqml)
    full_c, full_suv, liver = prepared.full_clipped, prepared.full_suv, prepared.liver
    records = tuple(_lesion_record(image_suv, site, prepared) for site in prepared.sites)
    lesions = _lesion_summary(image_suv, prepared, records)
    # A section without liver (training sections may lie anywhere) has no liver figures.
    has_liver = bool(liver.any())
    metrics = CaseMetrics(
        psnr_db=psnr_suv(image_c, full_c),
        nrmse=float(normalized_root_mse(full_c, image_c)),
        ssim=ssim_suv(image_c, full_c),
        liver_bias_pct=(
            100.0 * (region_mean(image_suv, liver) / region_mean(full_suv, liver) - 1)
            if has_liver
            else math.nan
        ),
        liver_cov_ratio=(
            region_cov(image_suv, liver) / region_cov(full_suv, liver) if has_liver else math.nan
        ),
        n_lesions=len(records),
        false_hot_spots=(
            float(count_hot_spots(image_suv, liver, prepared.hot_excluded))
            if has_liver
            else math.nan
        ),
        **lesions,
    )
    return metrics, records


def case_metrics(output_bqml: npt.NDArray[np.floating], case: EvalCase) -> CaseMetrics:
    """Every figure of one output volume against the case's references (one-off scoring)."""
    return score(output_bqml, prepare_case(case))[0]
