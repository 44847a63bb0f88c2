"""The Gaussian matched to a target liver noise: reached by bisection, or bounded."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from model.baselines import gaussian_postfilter
from model.evaluation.matched import MAX_FWHM_MM, TOLERANCE, match_gaussian
from model.simulate.metrics import region_cov

SPACING = (3.0, 2.0, 2.0)


@pytest.fixture(scope="module")
def noisy() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """A noisy volume (CoV 0.5) and a liver block inside it."""
    rng = np.random.default_rng(3)
    volume = (1.0 + 0.5 * rng.standard_normal((24, 48, 48))).astype(np.float32)
    liver = np.zeros(volume.shape, dtype=bool)
    liver[6:18, 12:36, 12:36] = True
    return volume, liver


def test_bisection_reaches_the_target_noise(
    noisy: tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]],
) -> None:
    volume, liver = noisy
    matched = match_gaussian(volume, SPACING, liver, 0.1)
    assert matched.converged
    assert 0.0 < matched.fwhm_mm < MAX_FWHM_MM
    assert matched.liver_cov == pytest.approx(0.1, rel=TOLERANCE)
    # The liver box the search filters gives the liver what the whole volume's filter gives.
    assert region_cov(matched.volume, liver) == pytest.approx(matched.liver_cov, rel=1e-5)
    whole = gaussian_postfilter(volume, SPACING, matched.fwhm_mm)
    np.testing.assert_array_equal(matched.volume, whole)


def test_a_target_at_the_input_noise_leaves_the_input(
    noisy: tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]],
) -> None:
    volume, liver = noisy
    matched = match_gaussian(volume, SPACING, liver, 0.9)
    assert matched.fwhm_mm == 0.0
    np.testing.assert_array_equal(matched.volume, volume)


def test_an_unreachable_target_stops_at_the_widest_filter(
    noisy: tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]],
) -> None:
    volume, liver = noisy
    matched = match_gaussian(volume, SPACING, liver, 1e-6)
    assert not matched.converged
    assert matched.fwhm_mm == MAX_FWHM_MM


def test_no_liver_is_refused() -> None:
    volume = np.ones((4, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="no liver"):
        match_gaussian(volume, SPACING, np.zeros(volume.shape, dtype=bool), 0.1)


def test_a_target_below_what_any_gaussian_reaches_gives_the_quietest_filter() -> None:
    # A hot organ beside the liver: wide filters carry its activity into the liver, so the
    # liver CoV falls, then rises again; a target below its lowest point is out of reach.
    rng = np.random.default_rng(5)
    volume = (1.0 + 0.3 * rng.standard_normal((24, 48, 48))).astype(np.float32)
    volume[:, :, 36:] += 20.0
    liver = np.zeros(volume.shape, dtype=bool)
    liver[4:20, 8:40, 8:34] = True
    matched = match_gaussian(volume, SPACING, liver, 1e-4)
    assert not matched.converged
    assert 0.0 < matched.fwhm_mm < MAX_FWHM_MM
    wider = region_cov(gaussian_postfilter(volume, SPACING, MAX_FWHM_MM), liver)
    assert matched.liver_cov < wider
    assert matched.liver_cov < region_cov(volume, liver)
