"""Slice projector: exact adjoint, correct line integrals, subsets that partition the rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.simulate.projector import SliceProjector, build_projector


@pytest.fixture(scope="module")
def projector() -> SliceProjector:
    """A 40x40 slice with an elliptical support, 48 angles in 8 subsets."""
    yy, xx = np.mgrid[:40, :40] - 19.5
    support = (xx / 15.0) ** 2 + (yy / 11.0) ** 2 <= 1.0
    return build_projector(support, pixel_mm=10.0, n_angles=48, n_subsets=8)


def test_adjoint_holds(projector: SliceProjector) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(projector.n_pixels, 3, generator=gen, dtype=torch.float64).float()
    y = torch.rand(projector.n_rows, 3, generator=gen, dtype=torch.float64).float()
    lhs = float((projector.forward(x).double() * y.double()).sum())
    rhs = float((x.double() * projector.back(y).double()).sum())
    assert lhs == pytest.approx(rhs, rel=1e-5)


def test_adjoint_holds_per_subset(projector: SliceProjector) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(projector.n_pixels, 2, generator=gen)
    b = projector.subset_bounds
    for m in range(projector.n_subsets):
        y = torch.rand(b[m + 1] - b[m], 2, generator=gen)
        lhs = float((projector.forward(x, m) * y).sum())
        rhs = float((x * projector.back(y, m)).sum())
        assert lhs == pytest.approx(rhs, rel=1e-5)


def test_uniform_ellipse_chord_length(projector: SliceProjector) -> None:
    ones = torch.ones(projector.n_pixels, 1)
    sino = projector.forward(ones)[:, 0].numpy()
    # Longest chord of the 30 x 22 pixel ellipse at 10 mm pixels is ~30 cm.
    assert 28.0 < sino.max() < 32.5
    # Every angle carries the same total: the area of the support times the bin width.
    per_angle = np.bincount(projector.angle_index, weights=sino, minlength=projector.n_angles)
    area_cm2 = projector.n_pixels * 1.0
    np.testing.assert_allclose(per_angle * 1.0, area_cm2, rtol=1e-5)


def test_subsets_partition_interleaved_angles(projector: SliceProjector) -> None:
    b = projector.subset_bounds
    assert b[0] == 0 and b[-1] == projector.n_rows
    for m in range(projector.n_subsets):
        angles = projector.angle_index[b[m] : b[m + 1]]
        assert set(np.unique(angles)) == set(range(m, projector.n_angles, projector.n_subsets))


def test_subsets_must_divide_angles() -> None:
    with pytest.raises(ValueError, match="do not divide"):
        build_projector(np.ones((8, 8), dtype=bool), 10.0, n_angles=12, n_subsets=5)
