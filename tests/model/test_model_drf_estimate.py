"""Noise-statistic DRF estimate: features follow the noise, a fit recovers known DRFs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from model.drf_estimate import (
    VOXEL_FEATURE_NAMES,
    WEIGHT_FEATURE_NAMES,
    DrfCalibration,
    erode_in_plane,
    fit_drf_calibration,
    noise_features,
)

SUV_PER_BQML = 1e-4


def _volume(seed: int, drf: float, counts_scale: float = 1.0) -> np.ndarray:
    """A uniform body at 2 SUV with white Poisson-like noise: relative std ~ sqrt(drf)."""
    rng = np.random.default_rng(seed)
    volume = np.zeros((6, 48, 48), dtype=np.float32)
    mean = 2.0 / SUV_PER_BQML
    rel_std = 0.02 * np.sqrt(drf / counts_scale)
    volume[:, 6:42, 6:42] = mean * (1.0 + rel_std * rng.standard_normal((6, 36, 36)))
    return volume


def test_relative_noise_feature_grows_as_half_log_drf() -> None:
    low = noise_features(_volume(0, 4.0), SUV_PER_BQML)
    high = noise_features(_volume(0, 100.0), SUV_PER_BQML)
    assert high[0] - low[0] == pytest.approx(0.5 * np.log(25.0), abs=0.1)
    assert high[3] == pytest.approx(low[3], abs=0.05)  # same mean activity


def test_fit_recovers_known_drfs_and_round_trips() -> None:
    drfs = [4.0, 10.0, 20.0, 50.0, 100.0]
    rows, targets, groups = [], [], []
    for seed in range(4):
        for drf in drfs:
            rows.append(noise_features(_volume(seed, drf), SUV_PER_BQML))
            targets.append(drf)
            groups.append(seed)
    calibration = fit_drf_calibration(np.stack(rows), targets, groups)
    assert calibration.loo_median_factor_error < 1.1
    assert calibration.estimate(_volume(9, 33.0), SUV_PER_BQML) == pytest.approx(33.0, rel=0.15)
    assert DrfCalibration.from_json(calibration.to_json()) == calibration


def test_flat_air_is_refused() -> None:
    with pytest.raises(ValueError):
        noise_features(np.zeros((3, 16, 16), np.float32), SUV_PER_BQML)


def test_fit_needs_two_phantoms() -> None:
    with pytest.raises(ValueError):
        fit_drf_calibration(np.ones((2, 5)), [4.0, 20.0], [0, 0])


def test_noise_free_volume_estimates_full_dose() -> None:
    calibration = DrfCalibration((2.0, 0.0, 0.0, 0.0, 8.0), 2, 1.0)
    volume = np.zeros((4, 32, 32), np.float32)
    volume[:, 4:28, 4:28] = 2.0 / SUV_PER_BQML
    assert calibration.estimate(volume, SUV_PER_BQML) == 1.0


def _voxel_volume(seed: int, drf: float, voxel_mm: float) -> np.ndarray:
    """Same counts per ml on another grid: the relative noise per voxel scales as
    voxel volume ** -1/2."""
    return _volume(seed, drf, counts_scale=(voxel_mm / 4.0) ** 3)


def test_voxel_features_tell_small_voxels_from_low_dose() -> None:
    drfs = [1.0, 2.0, 4.0, 10.0, 20.0, 50.0, 100.0]
    sizes = [2.0, 3.0, 4.0, 5.0]
    rows, targets, groups = [], [], []
    for seed in range(8):
        voxel = sizes[seed % len(sizes)]
        for drf in drfs:
            rows.append(
                noise_features(
                    _voxel_volume(seed, drf, voxel),
                    SUV_PER_BQML,
                    (voxel, voxel, voxel),
                    VOXEL_FEATURE_NAMES,
                )
            )
            targets.append(drf)
            groups.append(seed)
    calibration = fit_drf_calibration(np.stack(rows), targets, groups, VOXEL_FEATURE_NAMES)
    assert calibration.needs_spacing
    # a full dose in 2 mm voxels is as noisy per voxel as DRF 8 in 4 mm voxels
    full_dose_small = calibration.estimate(_voxel_volume(99, 1.0, 2.0), SUV_PER_BQML, (2, 2, 2))
    assert full_dose_small < 1.3
    unseen = calibration.estimate(_voxel_volume(98, 20.0, 2.5), SUV_PER_BQML, (2.5, 2.5, 2.5))
    assert unseen == pytest.approx(20.0, rel=0.2)
    assert DrfCalibration.from_json(calibration.to_json()) == calibration


def test_voxel_calibration_refuses_to_guess_without_spacing() -> None:
    calibration = DrfCalibration((1.0,) * len(VOXEL_FEATURE_NAMES), 2, 1.0, VOXEL_FEATURE_NAMES)
    with pytest.raises(ValueError, match="spacing"):
        calibration.estimate(_volume(0, 4.0), SUV_PER_BQML)


def test_unknown_feature_names_are_refused() -> None:
    text = DrfCalibration((1.0, 2.0), 2, 1.0, ("a", "one")).to_json()
    with pytest.raises(ValueError, match="not known"):
        DrfCalibration.from_json(text)


def _weighed_volume(seed: int, drf: float, weight_kg: float) -> np.ndarray:
    """A standard acquisition of a heavier patient is noisier: relative noise grows as
    sqrt(weight / 75) at the same DRF (de Groot et al. 2013), in a body of the same size."""
    return _volume(seed, drf, counts_scale=75.0 / weight_kg)


def test_weight_feature_tells_a_heavy_full_dose_from_a_light_low_dose() -> None:
    drfs = [1.0, 2.0, 4.0, 10.0, 20.0, 50.0, 100.0]
    weights = [50.0, 70.0, 90.0, 120.0]
    voxel = (4.0, 4.0, 4.0)

    def fit(names: tuple[str, ...]) -> DrfCalibration:
        rows, targets, groups = [], [], []
        for seed in range(8):
            weight = weights[seed % len(weights)]
            for drf in drfs:
                volume = _weighed_volume(seed, drf, weight)
                rows.append(noise_features(volume, SUV_PER_BQML, voxel, names, weight))
                targets.append(drf)
                groups.append(seed)
        return fit_drf_calibration(np.stack(rows), targets, groups, names)

    with_weight, without = fit(WEIGHT_FEATURE_NAMES), fit(VOXEL_FEATURE_NAMES)
    assert with_weight.needs_weight and not without.needs_weight
    assert with_weight.loo_median_factor_error < 1.1 < without.loo_median_factor_error
    # full dose of a 120 kg patient is as noisy as DRF 1.6 of a 75 kg one
    heavy_full_dose = _weighed_volume(99, 1.0, 120.0)
    assert with_weight.estimate(heavy_full_dose, SUV_PER_BQML, voxel, 120.0) < 1.25
    light = with_weight.estimate(_weighed_volume(98, 20.0, 60.0), SUV_PER_BQML, voxel, 60.0)
    assert light == pytest.approx(20.0, rel=0.2)
    assert DrfCalibration.from_json(with_weight.to_json()) == with_weight


def test_weight_calibration_refuses_to_guess_without_a_weight() -> None:
    calibration = DrfCalibration((1.0,) * len(WEIGHT_FEATURE_NAMES), 2, 1.0, WEIGHT_FEATURE_NAMES)
    with pytest.raises(ValueError, match="weight"):
        calibration.estimate(_volume(0, 4.0), SUV_PER_BQML, (4.0, 4.0, 4.0))
    with pytest.raises(ValueError, match="weight"):
        calibration.estimate(_volume(0, 4.0), SUV_PER_BQML, (4.0, 4.0, 4.0), 0.0)


def test_the_fast_in_plane_erosion_is_the_binary_erosion() -> None:
    rng = np.random.default_rng(3)
    mask = ndimage.uniform_filter(rng.random((5, 40, 33)), (1, 5, 5)) > 0.48
    mask[:, :, :4] = True  # touching the border: outside counts as background
    expected = ndimage.binary_erosion(mask, np.ones((1, 7, 7)))
    got = erode_in_plane(mask, 7)
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(got, expected)
