"""Classical baselines: Gaussian post-filters, the noise estimate, NLM and optional BM4D."""

from __future__ import annotations

import numpy as np
import pytest

from model.baselines import (
    TUNED_GAUSSIAN_FWHM_MM,
    bm4d_available,
    estimate_noise_sigma,
    gaussian_postfilter,
    nlm_denoise,
    tuned_gaussian,
    tuned_gaussian_fwhm_mm,
)
from model.evaluation.methods import parse_method
from model.simulate import SimulatedStudy, simulate_study
from model.simulate.metrics import liver_mask, region_cov, region_mean


@pytest.fixture(scope="module")
def noisy_study() -> SimulatedStudy:
    """A tiny phantom at DRF 50: noisy enough that a denoiser must visibly help."""
    return simulate_study(seed=5, drfs=[50.0], size="tiny")


def test_gaussian_leaves_a_uniform_region_unchanged() -> None:
    volume = np.full((12, 16, 16), 2.5, dtype=np.float32)
    out = gaussian_postfilter(volume, (3.0, 2.0, 2.0), 6.0)
    np.testing.assert_allclose(out, volume, rtol=1e-5)


def test_tuned_fwhm_is_the_table_at_training_drfs_and_interpolates_between() -> None:
    for drf, fwhm in TUNED_GAUSSIAN_FWHM_MM.items():
        assert tuned_gaussian_fwhm_mm(drf) == pytest.approx(fwhm)
    low, high = sorted(TUNED_GAUSSIAN_FWHM_MM)[1:3]
    between = tuned_gaussian_fwhm_mm(float(np.sqrt(low * high)))
    assert min(TUNED_GAUSSIAN_FWHM_MM[low], TUNED_GAUSSIAN_FWHM_MM[high]) <= between
    assert between <= max(TUNED_GAUSSIAN_FWHM_MM[low], TUNED_GAUSSIAN_FWHM_MM[high])
    assert tuned_gaussian_fwhm_mm(1000.0) == TUNED_GAUSSIAN_FWHM_MM[max(TUNED_GAUSSIAN_FWHM_MM)]


def test_tuned_fwhm_refuses_a_drf_below_one() -> None:
    with pytest.raises(ValueError, match="drf"):
        tuned_gaussian_fwhm_mm(0.5)


def test_tuned_gaussian_matches_gaussian_at_the_tuned_width() -> None:
    volume = np.random.default_rng(1).random((8, 10, 10), dtype=np.float32)
    expected = gaussian_postfilter(volume, (2.0, 2.0, 2.0), TUNED_GAUSSIAN_FWHM_MM[20.0])
    np.testing.assert_array_equal(tuned_gaussian(volume, (2.0, 2.0, 2.0), 20.0), expected)


def test_noise_estimate_reads_white_noise_on_a_flat_body() -> None:
    rng = np.random.default_rng(2)
    volume = (5.0 + 0.3 * rng.standard_normal((30, 30, 30))).astype(np.float32)
    assert estimate_noise_sigma(volume) == pytest.approx(0.3, rel=0.06)


def test_noise_estimate_refuses_an_empty_volume() -> None:
    with pytest.raises(ValueError, match="body"):
        estimate_noise_sigma(np.zeros((5, 5, 5), dtype=np.float32))


def test_nlm_lowers_liver_noise_and_keeps_liver_mean(noisy_study: SimulatedStudy) -> None:
    s = noisy_study
    low = s.low_dose_bqml[50.0]
    out = nlm_denoise(low, s.spacing_mm, s.suv_per_bqml)
    mask = liver_mask(s.organ_labels, s.lesion_labels)
    assert out.shape == low.shape
    assert out.dtype == np.float32
    assert region_cov(out, mask) < 0.8 * region_cov(low, mask)
    assert region_mean(out, mask) == pytest.approx(region_mean(low, mask), rel=0.05)


def test_nlm_refuses_a_spacing_of_the_wrong_length(noisy_study: SimulatedStudy) -> None:
    with pytest.raises(ValueError, match="spacing"):
        nlm_denoise(noisy_study.full_dose_bqml, (2.0, 2.0), noisy_study.suv_per_bqml)


def test_bm4d_is_optional() -> None:
    if bm4d_available():
        assert parse_method("bm4d").name == "bm4d"
    else:
        with pytest.raises(ValueError, match="bm4d is not installed"):
            parse_method("bm4d")
