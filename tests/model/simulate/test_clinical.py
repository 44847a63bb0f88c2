"""Clinical scanner profiles: the spread of grids and protocols, the count level, sections."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.simulate import SimulatedStudy, simulate_study
from model.simulate.acquisition import (
    acquire_and_reconstruct,
    drawn_patient_cov_factor,
    has_liver_pilot,
)
from model.simulate.metrics import liver_mask, region_cov
from model.simulate.scanner import (
    CLINICAL_PROFILES,
    REFERENCE_WEIGHT_KG,
    draw_clinical_scanner,
    draw_scanner,
    liver_cov_target,
)
from model.simulate.seeding import Purpose, rng_for
from model.simulate.study import crop_to_body
from model.simulate.truth import make_phantom

TRAINED = [p for p in CLINICAL_PROFILES if not p.held_out]
HELD_OUT = [p for p in CLINICAL_PROFILES if p.held_out]


def test_training_profiles_span_what_clinics_send() -> None:
    pixels = [p.pixel_mm for p in TRAINED]
    slices = [s for p in TRAINED for s in p.slice_mm]
    matrices = [p.matrix for p in TRAINED]
    resolutions = [p.resolution_fwhm_mm for p in TRAINED]
    assert min(pixels) <= 2.0 and max(pixels) >= 4.5
    assert min(slices) <= 2.0 and max(slices) >= 5.0
    assert min(matrices) <= 128 and max(matrices) >= 440
    assert min(resolutions) <= 3.5 and max(resolutions) >= 6.5
    assert {0.0, 5.0, 6.4, 7.0} <= {f for p in TRAINED for f in p.postfilter_fwhm_mm}


def test_held_out_profiles_have_voxel_sizes_no_training_profile_has() -> None:
    trained_voxels = {(p.pixel_mm, s) for p in TRAINED for s in p.slice_mm}
    trained_pixels = {p.pixel_mm for p in TRAINED}
    assert HELD_OUT
    for profile in HELD_OUT:
        assert profile.pixel_mm not in trained_pixels
        assert all((profile.pixel_mm, s) not in trained_voxels for s in profile.slice_mm)


def test_every_profile_divides_its_angles_into_subsets() -> None:
    for profile in CLINICAL_PROFILES:
        assert profile.n_angles % profile.osem_subsets == 0, profile.name
        assert profile.n_angles >= 0.5 * profile.matrix * 0.6


@pytest.mark.parametrize("held_out", [False, True])
def test_draws_come_only_from_their_pool(held_out: bool) -> None:
    names = {p.name for p in CLINICAL_PROFILES if p.held_out == held_out}
    drawn = {draw_clinical_scanner(rng_for(s, Purpose.SCANNER), held_out).name for s in range(60)}
    assert drawn == names


def test_full_dose_noise_grows_with_patient_weight() -> None:
    scanner = draw_clinical_scanner(rng_for(1, Purpose.SCANNER))
    assert scanner.reference_liver_cov is not None

    def median_target(weight: float) -> float:
        targets = [liver_cov_target(scanner, weight, np.random.default_rng(i)) for i in range(200)]
        return float(np.median(targets))

    light, heavy = median_target(60.0), median_target(120.0)
    assert heavy / light == pytest.approx(math.sqrt(2.0), rel=0.05)
    assert median_target(75.0) == pytest.approx(scanner.reference_liver_cov, rel=0.05)


def _cheap_seed(start: int) -> int:
    """The first seed from ``start`` whose drawn profile simulates in seconds (matrix <= 200,
    pixels >= 3.6 mm)."""
    for seed in range(start, start + 200):
        scanner = draw_clinical_scanner(rng_for(seed, Purpose.SCANNER))
        if scanner.matrix is not None and scanner.matrix <= 200 and (scanner.pixel_mm or 0) >= 3.6:
            return seed
    raise AssertionError("no cheap profile in 200 seeds")


@pytest.fixture(scope="module")
def clinical() -> SimulatedStudy:
    """One clinical liver section at full dose, DRF 1 and DRF 10, with its noise-free image."""
    return simulate_study(_cheap_seed(900), [1.0, 10.0], size="clinical", noise_free=True)


def test_clinical_study_is_on_its_profiles_grid(clinical: SimulatedStudy) -> None:
    scanner = clinical.scanner
    assert clinical.spacing_mm == (scanner.slice_mm, scanner.pixel_mm, scanner.pixel_mm)
    length_mm = clinical.full_dose_bqml.shape[0] * clinical.spacing_mm[0]
    assert 150.0 <= length_mm <= 240.0
    assert scanner.matrix is not None
    assert clinical.full_dose_bqml.shape[1] < scanner.matrix  # cropped to the body
    assert min(clinical.full_dose_bqml.shape[1:]) >= 72


def test_drf_1_is_the_full_dose_itself(clinical: SimulatedStudy) -> None:
    np.testing.assert_array_equal(clinical.low_dose_bqml[1.0], clinical.full_dose_bqml)
    assert clinical.low_dose_counts[1.0] == clinical.full_dose_counts


def test_full_dose_liver_noise_is_the_profiles_clinical_level(clinical: SimulatedStudy) -> None:
    mask = liver_mask(clinical.organ_labels, clinical.lesion_labels)
    assert mask.sum() > 1000
    cov = region_cov(clinical.full_dose_bqml, mask)
    reference = clinical.scanner.reference_liver_cov
    assert reference is not None
    # weight 45-125 kg, 1.5-4 min beds and the patient spread keep it within a factor ~2
    assert 0.5 * reference < cov < 2.2 * reference


def test_noise_free_image_is_smoother_than_full_dose(clinical: SimulatedStudy) -> None:
    assert clinical.noise_free_bqml is not None
    mask = liver_mask(clinical.organ_labels, clinical.lesion_labels)
    assert region_cov(clinical.noise_free_bqml, mask) < 0.6 * region_cov(
        clinical.full_dose_bqml, mask
    )
    body = clinical.organ_labels > 0
    ratio = clinical.noise_free_bqml[body].mean() / clinical.full_dose_bqml[body].mean()
    assert ratio == pytest.approx(1.0, abs=0.03)


def test_the_drawn_patient_factor_is_the_one_the_count_level_was_set_with() -> None:
    seed = _cheap_seed(900)
    scanner = draw_clinical_scanner(rng_for(seed, Purpose.SCANNER))
    phantom = make_phantom(seed, "clinical", "fdg", scanner, True)
    recon = acquire_and_reconstruct(phantom, scanner, [4.0], seed, "clinical")
    factor = drawn_patient_cov_factor(scanner, seed)
    assert factor is not None and factor != 1.0
    assert scanner.reference_liver_cov is not None
    weight = phantom.tracer.patient_weight_kg
    expected = scanner.reference_liver_cov * math.sqrt(weight / REFERENCE_WEIGHT_KG) * factor
    assert recon.target_liver_cov == pytest.approx(expected, rel=1e-12)
    assert drawn_patient_cov_factor(scanner, seed + 1) != factor


def test_the_fixed_sizes_draw_no_patient_factor() -> None:
    scanner = draw_scanner(rng_for(3, Purpose.SCANNER))
    assert drawn_patient_cov_factor(scanner, 3) is None


def test_section_without_liver_is_still_calibrated() -> None:
    seed = _cheap_seed(700)
    while True:
        scanner = draw_clinical_scanner(rng_for(seed, Purpose.SCANNER))
        cheap = (scanner.matrix or 999) <= 200 and (scanner.pixel_mm or 0) >= 3.6
        if cheap and not has_liver_pilot(make_phantom(seed, "clinical", "fdg", scanner, False)):
            break
        assert seed < 800, "no cheap liver-free section among 100 seeds"
        seed += 1
    study = simulate_study(seed, [4.0], size="clinical", liver_centred=False)
    assert study.full_dose_counts > 0
    assert np.isfinite(study.full_dose_bqml).all() and study.full_dose_bqml.max() > 0
    body = study.organ_labels > 0
    assert np.median(study.full_dose_bqml[body]) > 0


def test_crop_keeps_every_body_voxel_and_says_where() -> None:
    study = simulate_study(3, [4.0], size="tiny")
    cropped = crop_to_body(study, margin_px=1, minimum_px=8)
    y0, x0 = cropped.crop_origin_yx
    ny, nx = cropped.organ_labels.shape[1:]
    assert ny < study.organ_labels.shape[1] or nx < study.organ_labels.shape[2]
    np.testing.assert_array_equal(
        cropped.full_dose_bqml, study.full_dose_bqml[:, y0 : y0 + ny, x0 : x0 + nx]
    )
    assert (cropped.organ_labels > 0).sum() == (study.organ_labels > 0).sum()
