"""The DRF-estimate floor of a simulated dataset: landings measured, factors summarised."""

from __future__ import annotations

import math

import pytest

from model.evaluation.drf_floor import landing_of, median_factor
from model.simulate import simulate_study
from model.simulate.acquisition import drawn_patient_cov_factor
from model.simulate.scanner import draw_clinical_scanner
from model.simulate.seeding import Purpose, rng_for


def _cheap_clinical_seed(start: int) -> int:
    """The first seed from ``start`` whose clinical profile simulates in seconds."""
    for seed in range(start, start + 200):
        scanner = draw_clinical_scanner(rng_for(seed, Purpose.SCANNER))
        if (scanner.matrix or 999) <= 200 and (scanner.pixel_mm or 0) >= 3.6:
            return seed
    raise AssertionError("no cheap profile in 200 seeds")


def test_a_clinical_full_dose_lands_near_its_drawn_target() -> None:
    seed = _cheap_clinical_seed(910)
    study = simulate_study(seed, [1.0], size="clinical", noise_free=True)
    found = landing_of(study)
    assert found is not None and found.seed == seed
    factor = drawn_patient_cov_factor(study.scanner, seed)
    assert factor is not None
    # the drawn factor moves the aim the same way it moves the CoV
    assert (found.target_noise > found.population_noise) == (factor > 1.0)
    assert abs(found.landing) < math.log(1.5)  # the pilot calibration lands near its aim


def test_fixed_sizes_have_no_clinical_target() -> None:
    assert landing_of(simulate_study(3, [1.0], size="tiny", noise_free=True)) is None


def test_median_factor_squares_the_noise_ratio() -> None:
    assert median_factor([math.log(1.1), -math.log(1.1), 0.0]) == pytest.approx(1.21)
    with pytest.raises(ValueError, match="no phantoms"):
        median_factor([])
