"""Classical denoisers the network is compared against (and the node's fallback backend).

``gaussian_postfilter`` is what scanners themselves apply after OSEM: an isotropic Gaussian in
millimetres, converted to voxels per axis so anisotropic voxels are filtered isotropically.
``tuned_gaussian`` is the same filter with the FWHM a site would pick for each dose level
(``TUNED_GAUSSIAN_FWHM_MM``, chosen on validation phantoms by ``model.evaluation.tuning``).

``nlm_denoise`` is 3D non-local means (scikit-image) in SUV. Reconstructed PET noise grows
with activity, so one filter strength fits no region; the volume is first square-rooted, which
roughly stabilises the variance (noise std of sqrt(x) barely depends on x when var(x) ~ x),
denoised there with ``h = NLM_H_FACTOR * sigma`` and squared back. Squaring a smoothed square
root underestimates the mean by the removed variance (the liver SUVmean drops by up to 20 %
at DRF 100), so the local mean of the input is restored afterwards: the output is multiplied
by the ratio of the input's and the output's 20 mm Gaussian means. That keeps SUVmean of
regions larger than ~20 mm, and the NLM texture inside them.

``bm4d_denoise`` is an optional extra: the ``bm4d`` package is licensed for non-commercial use
only, so it is never a dependency; ``bm4d_available()`` says whether it can be used here.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.restoration import denoise_nl_means

__all__ = [
    "FWHM_PER_SIGMA",
    "NLM_H_FACTOR",
    "NLM_MEAN_RESTORE_FWHM_MM",
    "NLM_PATCH_DISTANCE",
    "NLM_PATCH_SIZE",
    "TUNED_GAUSSIAN_FWHM_MM",
    "bm4d_available",
    "bm4d_denoise",
    "estimate_noise_sigma",
    "gaussian_postfilter",
    "nlm_denoise",
    "tuned_gaussian",
    "tuned_gaussian_fwhm_mm",
]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

# Chosen by ``python -m model.evaluation.tuning`` on validation phantoms (seeds 2000-2001, size
# small, FDG): the FWHM of the grid 4-14 mm with the best mean PSNR against full dose at each
# training DRF. 4 mm at DRF 4 is the grid's edge: the scanner's own post-filter is already in
# the input, so little extra smoothing pays at low DRF.
TUNED_GAUSSIAN_FWHM_MM: Mapping[float, float] = {
    4.0: 4.0,
    10.0: 6.0,
    20.0: 8.0,
    50.0: 8.0,
    100.0: 10.0,
}

# NLM: 3x3x3 patches searched within +-2 voxels (a 5x5x5 window: 2 s for a small volume on one
# core; +-3 costs 2.5x for < 0.2 dB). The h factor is the best of the same tuning run pooled
# over the training DRFs (alone, DRF 4 would pick 0.8 and DRF 100 1.6).
NLM_PATCH_SIZE = 3
NLM_PATCH_DISTANCE = 2
NLM_H_FACTOR = 1.3
NLM_MEAN_RESTORE_FWHM_MM = 20.0
BODY_SUV = 0.2  # below this (air, outside the patient) noise is not estimated


def _check(volume: npt.NDArray[np.floating], spacing_mm: Sequence[float]) -> None:
    """Refuse a spacing that does not match the volume.

    Raises:
        ValueError: one spacing per axis is required.
    """
    if len(spacing_mm) != volume.ndim:
        raise ValueError(f"spacing {tuple(spacing_mm)} does not match volume shape {volume.shape}")


def gaussian_postfilter(
    volume: npt.NDArray[np.floating], spacing_mm: Sequence[float], fwhm_mm: float
) -> npt.NDArray[np.float32]:
    """Isotropic 3D Gaussian filter of ``fwhm_mm`` on a (z, y, x) volume with ``spacing_mm``.

    Mass is preserved (the kernel sums to one; borders are mirrored), so mean activity in a
    large region, and therefore SUVmean, is unchanged.
    """
    if fwhm_mm <= 0:
        raise ValueError(f"fwhm_mm must be positive, got {fwhm_mm}")
    _check(volume, spacing_mm)
    sigma_voxels = [fwhm_mm / FWHM_PER_SIGMA / float(s) for s in spacing_mm]
    filtered = ndimage.gaussian_filter(volume.astype(np.float32), sigma=sigma_voxels, mode="mirror")
    return np.asarray(filtered, dtype=np.float32)


def tuned_gaussian_fwhm_mm(drf: float) -> float:
    """FWHM of the tuned Gaussian at ``drf``: the table value, else linear in log(DRF).

    DRFs between table entries (the held-out 7, 15, 33, 75) are interpolated, as a site would
    set a dose level between two it had tuned; outside the table the nearest entry is used.
    """
    if not (math.isfinite(drf) and drf >= 1.0):
        raise ValueError(f"drf must be finite and >= 1, got {drf}")
    drfs = sorted(TUNED_GAUSSIAN_FWHM_MM)
    fwhms = [TUNED_GAUSSIAN_FWHM_MM[d] for d in drfs]
    return float(np.interp(math.log(drf), [math.log(d) for d in drfs], fwhms))


def tuned_gaussian(
    volume: npt.NDArray[np.floating], spacing_mm: Sequence[float], drf: float
) -> npt.NDArray[np.float32]:
    """The scanner's own filter with the FWHM tuned for this dose level."""
    return gaussian_postfilter(volume, spacing_mm, tuned_gaussian_fwhm_mm(drf))


def estimate_noise_sigma(volume: npt.NDArray[np.floating]) -> float:
    """Noise standard deviation: median over body voxels of the 3x3x3 local standard deviation.

    scikit-image's ``estimate_sigma`` (wavelet MAD) assumes white noise over the whole image:
    on PET, half the volume is noiseless air and the noise is correlated by the reconstruction,
    so it reports a fraction of the real noise. The median local deviation inside the body is
    dominated by flat tissue, where it is mostly noise; it still under-reads correlated noise,
    which the tuned ``NLM_H_FACTOR`` absorbs.

    Raises:
        ValueError: no voxel is above ``BODY_SUV`` (empty or non-SUV input).
    """
    data = np.asarray(volume, dtype=np.float32)
    body = ndimage.uniform_filter(data, size=3) > BODY_SUV
    if not body.any():
        raise ValueError("no body voxels above BODY_SUV; is the volume in SUV?")
    mean = ndimage.uniform_filter(data, size=3)
    mean_sq = ndimage.uniform_filter(data * data, size=3)
    local_sd = np.sqrt(np.clip(mean_sq - mean * mean, 0.0, None))
    return float(np.median(local_sd[body]))


def _restore_local_mean(
    output: npt.NDArray[np.float32],
    reference: npt.NDArray[np.float32],
    spacing_mm: Sequence[float],
) -> npt.NDArray[np.float32]:
    """Scale ``output`` so its coarse (20 mm) local mean equals that of ``reference``."""
    floor = np.float32(0.05 * BODY_SUV)
    smooth_out = gaussian_postfilter(output, spacing_mm, NLM_MEAN_RESTORE_FWHM_MM)
    smooth_ref = gaussian_postfilter(reference, spacing_mm, NLM_MEAN_RESTORE_FWHM_MM)
    ratio = np.where(smooth_out > floor, smooth_ref / np.maximum(smooth_out, floor), 1.0)
    return np.asarray(output * ratio, dtype=np.float32)


def nlm_denoise(
    volume_bqml: npt.NDArray[np.floating],
    spacing_mm: Sequence[float],
    suv_per_bqml: float,
    h_factor: float = NLM_H_FACTOR,
) -> npt.NDArray[np.float32]:
    """3D non-local means of a (z, y, x) Bq/ml volume, in square-root SUV; returns Bq/ml.

    Args:
        volume_bqml: activity concentration.
        spacing_mm: voxel spacing (z, y, x); used by the local-mean restoration only (NLM
            patches are in voxels, as scikit-image has no anisotropic patches).
        suv_per_bqml: SUV factor, so ``h`` is set on a scale that does not depend on the dose.
        h_factor: filter strength as a multiple of the estimated noise sigma.

    Raises:
        ValueError: bad spacing, non-positive factors, or a volume with no body voxels.
    """
    _check(volume_bqml, spacing_mm)
    if not (suv_per_bqml > 0 and h_factor > 0):
        raise ValueError(f"suv_per_bqml and h_factor must be > 0, got {suv_per_bqml}, {h_factor}")
    suv = np.clip(np.asarray(volume_bqml, dtype=np.float32) * np.float32(suv_per_bqml), 0.0, None)
    root = np.sqrt(suv)
    sigma = estimate_noise_sigma(root)
    denoised_root = denoise_nl_means(
        root,
        patch_size=NLM_PATCH_SIZE,
        patch_distance=NLM_PATCH_DISTANCE,
        h=h_factor * sigma,
        sigma=sigma,
        fast_mode=True,
        channel_axis=None,
    )
    denoised = np.square(np.asarray(denoised_root, dtype=np.float32))
    restored = _restore_local_mean(denoised, suv, spacing_mm)
    return np.asarray(restored / np.float32(suv_per_bqml), dtype=np.float32)


def bm4d_available() -> bool:
    """Whether the optional, non-commercially licensed ``bm4d`` package is importable."""
    return importlib.util.find_spec("bm4d") is not None


def bm4d_denoise(
    volume_bqml: npt.NDArray[np.floating], spacing_mm: Sequence[float], suv_per_bqml: float
) -> npt.NDArray[np.float32]:
    """BM4D in square-root SUV with the same noise estimate and mean restoration as NLM.

    Raises:
        ModuleNotFoundError: ``bm4d`` is not installed (check :func:`bm4d_available` first).
    """
    _check(volume_bqml, spacing_mm)
    bm4d = importlib.import_module("bm4d")
    suv = np.clip(np.asarray(volume_bqml, dtype=np.float32) * np.float32(suv_per_bqml), 0.0, None)
    root = np.sqrt(suv)
    denoised_root = np.asarray(bm4d.bm4d(root, estimate_noise_sigma(root)), dtype=np.float32)
    restored = _restore_local_mean(np.square(denoised_root), suv, spacing_mm)
    return np.asarray(restored / np.float32(suv_per_bqml), dtype=np.float32)
