"""OSEM: non-negative, recovers a noise-free image, keeps every DRF in Bq/ml."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.simulate.osem import osem
from model.simulate.projector import SliceProjector, build_projector


@pytest.fixture(scope="module")
def projector() -> SliceProjector:
    """A 32x32 disc support, 32 angles in 4 subsets."""
    yy, xx = np.mgrid[:32, :32] - 15.5
    return build_projector(xx**2 + yy**2 <= 13.0**2, pixel_mm=8.0, n_angles=32, n_subsets=4)


def _phantom(projector: SliceProjector, n_slices: int) -> torch.Tensor:
    """Warm background with a hot spot, differing per slice, as ``(pixels, slices)``."""
    yy, xx = np.nonzero(projector.support)
    base = 100.0 + 300.0 * (((yy - 12) ** 2 + (xx - 18) ** 2) < 9)
    cols = [base * (1.0 + 0.1 * z) for z in range(n_slices)]
    return torch.from_numpy(np.stack(cols, axis=1).astype(np.float32))


def test_noise_free_data_are_recovered(projector: SliceProjector) -> None:
    x_true = _phantom(projector, 2)
    mult = torch.full((projector.n_rows, 2), 0.5)
    additive = torch.full((projector.n_rows, 2), 2.0)
    expected = (projector.forward(x_true) * mult + additive)[:, None, :]
    x = osem(projector, expected, mult, additive, [1.0], iterations=30)[:, 0, :]
    assert float((x - x_true).abs().mean() / x_true.mean()) < 0.05


def test_images_are_non_negative_and_dose_scaled(projector: SliceProjector) -> None:
    gen = np.random.default_rng(3)
    x_true = _phantom(projector, 3)
    mult = torch.full((projector.n_rows, 3), 0.2)
    additive = torch.full((projector.n_rows, 3), 5.0)
    expected = (projector.forward(x_true) * mult + additive).numpy()
    full = gen.poisson(expected)
    low = gen.binomial(full, 1.0 / 10.0)
    data = torch.from_numpy(np.stack([full, low], axis=1).astype(np.float32))
    x = osem(projector, data, mult, additive, [1.0, 0.1], iterations=3)
    assert bool((x >= 0).all()) and bool(torch.isfinite(x).all())
    ratio = float(x[:, 1].sum() / x[:, 0].sum())
    assert ratio == pytest.approx(1.0, abs=0.05)


def test_zero_data_stay_non_negative(projector: SliceProjector) -> None:
    mult = torch.ones(projector.n_rows, 1)
    additive = torch.ones(projector.n_rows, 1)
    data = torch.zeros(projector.n_rows, 1, 1)
    x = osem(projector, data, mult, additive, [1.0], iterations=2)
    assert bool((x >= 0).all()) and bool(torch.isfinite(x).all())


def test_additive_term_must_be_positive(projector: SliceProjector) -> None:
    mult = torch.ones(projector.n_rows, 1)
    data = torch.ones(projector.n_rows, 1, 1)
    with pytest.raises(ValueError, match="strictly positive"):
        osem(projector, data, mult, torch.zeros(projector.n_rows, 1), [1.0], iterations=1)
