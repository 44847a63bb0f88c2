"""Counting: binomial thinning never adds counts and keeps the expected fraction."""

from __future__ import annotations

import numpy as np

from model.simulate.acquisition import thin


def test_thinning_never_exceeds_full_dose() -> None:
    rng = np.random.default_rng(0)
    full = rng.poisson(30.0, size=(200, 50))
    for drf in (2.0, 7.0, 15.0, 33.0, 75.0, 100.0):
        low = thin(full, drf, np.random.default_rng(int(drf)))
        assert (low <= full).all()
        assert (low >= 0).all()
        assert abs(low.sum() / full.sum() - 1.0 / drf) < 4.0 * np.sqrt(1.0 / (drf * full.sum()))


def test_thinning_by_one_keeps_everything() -> None:
    full = np.random.default_rng(1).poisson(5.0, size=1000)
    np.testing.assert_array_equal(thin(full, 1.0, np.random.default_rng(2)), full)


def test_thinned_counts_are_poisson() -> None:
    full = np.random.default_rng(4).poisson(200.0, size=200_000)
    low = thin(full, 20.0, np.random.default_rng(5))
    # Thinning Poisson(200) by 1/20 gives Poisson(10): variance equals mean.
    assert abs(low.var() / low.mean() - 1.0) < 0.03
