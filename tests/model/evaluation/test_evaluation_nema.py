"""NEMA NU 2 figures per lesion: contrast recovery of perfect and blurred lesions, BV of flat
and noisy backgrounds, ROI placement and size bins."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from model.evaluation.nema import (
    MIN_BV_ROIS,
    background_rois,
    background_variability,
    contrast_recovery,
    contrast_sites,
    near_contrast_recovery,
    size_bin,
)
from model.simulate import simulate_study
from model.simulate.metrics import lesion_recovery
from model.simulate.phantom import ORGAN_LABELS

SPACING = (3.0, 3.0, 3.0)
LIVER = ORGAN_LABELS["liver"]


def _liver_with_lesion(
    diameter_mm: float = 12.0,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int16], npt.NDArray[np.int16]]:
    """Truth, organ and lesion labels: a liver block with one hot sphere (4:1) inside."""
    shape = (40, 40, 40)
    organs = np.zeros(shape, dtype=np.int16)
    organs[2:-2, 2:-2, 2:-2] = LIVER
    grids = np.meshgrid(*(np.arange(n) - 20 for n in shape), indexing="ij")
    distance = np.sqrt(sum((g * s) ** 2 for g, s in zip(grids, SPACING, strict=True)))
    lesions = (distance <= diameter_mm / 2).astype(np.int16)
    truth = np.where(organs > 0, 1.0, 0.0) + 3.0 * lesions
    return truth.astype(np.float32), organs, lesions


def test_a_perfectly_recovered_lesion_has_cr_one_and_a_blurred_one_less() -> None:
    truth, organs, lesions = _liver_with_lesion()
    (site,) = contrast_sites(truth, organs, lesions, {1: 12.0}, SPACING)
    assert site.nema is not None and site.near is not None
    assert site.nema.true_ratio == pytest.approx(4.0)
    assert contrast_recovery(truth, site) == pytest.approx(1.0)
    assert near_contrast_recovery(truth, site) == pytest.approx(1.0)
    blurred = ndimage.gaussian_filter(truth, sigma=1.5)
    far, near = contrast_recovery(blurred, site), near_contrast_recovery(blurred, site)
    # Spill-out lowers the lesion mean; near the lesion it also lifts the background.
    assert 0.0 < near < far < 0.9


def test_the_near_shell_gives_the_simulation_s_lesion_crc() -> None:
    study = simulate_study(seed=7, drfs=[20.0], size="small")
    image = study.low_dose_bqml[20.0]
    sites = contrast_sites(
        study.truth_bqml,
        study.organ_labels,
        study.lesion_labels,
        dict(study.lesion_diameter_mm),
        study.spacing_mm,
    )
    expected = lesion_recovery(
        image,
        study.truth_bqml,
        study.organ_labels,
        study.lesion_labels,
        dict(study.lesion_suv),
        dict(study.lesion_diameter_mm),
        study.suv_per_bqml,
    )
    got = {s.label: near_contrast_recovery(image, s) for s in sites if s.near is not None}
    assert got == pytest.approx({r.label: r.crc for r in expected})


def test_bv_is_zero_on_a_flat_background_and_matches_the_noise_on_a_noisy_one() -> None:
    truth, organs, lesions = _liver_with_lesion()
    (site,) = contrast_sites(truth, organs, lesions, {1: 12.0}, SPACING)
    assert site.bv_organ == LIVER
    assert site.bv_rois.shape[0] >= MIN_BV_ROIS
    assert background_variability(truth, site.bv_rois) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(0)
    noisy = truth + rng.normal(0.0, 0.2, truth.shape).astype(np.float32)
    voxels_per_roi = site.bv_rois.shape[1]
    # Independent voxels: the SD of an ROI mean is sigma / sqrt(voxels).
    expected = 0.2 / math.sqrt(voxels_per_roi)
    assert background_variability(noisy, site.bv_rois) == pytest.approx(expected, rel=0.3)


def test_background_rois_are_disjoint_spheres_inside_the_region() -> None:
    allowed = np.zeros((30, 30, 30), dtype=bool)
    allowed[3:-3, 3:-3, 3:-3] = True
    allowed[10:20, 10:20, 10:20] = False  # a hole, as a lesion leaves
    rois = background_rois(allowed, (2.0, 2.0, 2.0), 10.0)
    assert 12 <= len(rois) <= 60
    flat = rois.ravel()
    assert len(np.unique(flat)) == flat.size
    assert allowed.ravel()[flat].all()
    # A sphere of 10 mm on 2 mm voxels holds the voxels within 5 mm of its centre.
    assert rois.shape[1] == 81


def test_too_few_background_rois_give_no_bv() -> None:
    allowed = np.zeros((12, 12, 12), dtype=bool)
    allowed[2:-2, 2:-2, 2:-2] = True
    rois = background_rois(allowed, (2.0, 2.0, 2.0), 10.0)
    assert 0 < len(rois) < MIN_BV_ROIS
    assert math.isnan(background_variability(np.ones(allowed.shape), rois))


def test_a_lesion_without_contrast_in_the_truth_is_left_out() -> None:
    _, organs, lesions = _liver_with_lesion()
    flat = np.where(organs > 0, 1.0, 0.0).astype(np.float32)
    assert contrast_sites(flat, organs, lesions, {1: 12.0}, SPACING) == []


@pytest.mark.parametrize(
    ("diameter", "key"),
    [(9.99, "lt10"), (10.0, "10_13"), (13.0, "10_13"), (13.01, "13_20"), (20.0, "13_20"),
     (20.5, "gt20")],
)  # fmt: skip
def test_size_bins(diameter: float, key: str) -> None:
    found = size_bin(diameter)
    assert found is not None and found.key == key
    assert size_bin(math.nan) is None
