"""SUVpeak and SUVmax of lesions: known spheres, a single hot voxel and a step edge."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from model.evaluation.lesions import (
    PEAK_RADIUS_MM,
    lesion_sites,
    sphere_kernel,
    suv_max,
    suv_peak,
)

SPHERE_ML = 4.0 / 3.0 * math.pi * PEAK_RADIUS_MM**3 / 1000.0


def _ball(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], radius_mm: float
) -> npt.NDArray[np.bool_]:
    """Voxels whose centres lie within ``radius_mm`` of the volume's centre voxel."""
    grids = np.meshgrid(*(np.arange(n) - n // 2 for n in shape), indexing="ij")
    squares = [(g * s) ** 2 for g, s in zip(grids, spacing, strict=True)]
    return np.asarray(np.sqrt(squares[0] + squares[1] + squares[2]) <= radius_mm)


def test_the_peak_sphere_holds_one_millilitre() -> None:
    assert pytest.approx(1.0) == SPHERE_ML
    for spacing in [(2.0, 2.0, 2.0), (5.0, 2.0, 2.0), (3.27, 3.65, 3.65)]:
        kernel = sphere_kernel(spacing)
        assert kernel.sum() == pytest.approx(1.0)
        # The centre voxel lies wholly inside the sphere: its weight is its share of 1 ml.
        centre = kernel[tuple(n // 2 for n in kernel.shape)]
        assert centre == pytest.approx(np.prod(spacing) / 1000.0, rel=0.03)


@pytest.mark.parametrize("spacing", [(2.0, 2.0, 2.0), (4.0, 2.0, 2.0), (20.0, 12.0, 12.0)])
def test_a_uniform_sphere_larger_than_1_ml_has_its_own_suv_as_peak_and_max(
    spacing: tuple[float, float, float],
) -> None:
    shape = (21, 31, 31)
    lesion = _ball(shape, spacing, 25.0)
    image = np.where(lesion, 6.0, 1.0).astype(np.float32)
    labels = lesion.astype(np.int16)
    (site,) = lesion_sites(labels, {1: 50.0}, spacing)
    assert suv_max(image, site) == pytest.approx(6.0)
    assert suv_peak(image, site, spacing) == pytest.approx(6.0)


def test_a_single_hot_voxel_has_a_peak_of_its_share_of_the_sphere() -> None:
    spacing = (2.0, 2.0, 2.0)
    image = np.zeros((15, 15, 15), dtype=np.float32)
    image[7, 7, 7] = 100.0
    labels = np.zeros(image.shape, dtype=np.int16)
    labels[7, 7, 7] = 1
    (site,) = lesion_sites(labels, {1: 2.0}, spacing)
    assert suv_max(image, site) == 100.0
    # 8 mm3 of hot voxel in a 1000 mm3 sphere.
    assert suv_peak(image, site, spacing) == pytest.approx(0.8, rel=0.03)


def test_a_step_edge_gives_the_spherical_cap_average() -> None:
    # Hot (3) from column 10 on, cold (1) before; the lesion is the first hot column, whose
    # centres lie h = 1 mm from the edge, so the sphere's cold part is a cap of height r - h.
    spacing = (2.0, 2.0, 2.0)
    image = np.ones((21, 21, 21), dtype=np.float32)
    image[:, :, 10:] = 3.0
    labels = np.zeros(image.shape, dtype=np.int16)
    labels[8:13, 8:13, 10] = 1
    (site,) = lesion_sites(labels, {1: 10.0}, spacing)
    r, h = PEAK_RADIUS_MM, 1.0
    cold = math.pi * (r - h) ** 2 * (2 * r + h) / 3.0 / (4.0 / 3.0 * math.pi * r**3)
    assert suv_peak(image, site, spacing) == pytest.approx(3.0 - 2.0 * cold, abs=0.03)
    assert suv_max(image, site) == 3.0


def test_sites_follow_the_labels_and_their_diameters() -> None:
    labels = np.zeros((9, 9, 9), dtype=np.int16)
    labels[2, 2, 2] = 3
    labels[6, 6, 6] = 1
    sites = lesion_sites(labels, {1: 8.0}, (4.0, 4.0, 4.0))
    assert [s.label for s in sites] == [1, 3]
    assert sites[0].diameter_mm == 8.0
    assert math.isnan(sites[1].diameter_mm)
