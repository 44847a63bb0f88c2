"""simulate_study: determinism, shared geometry, unbiased quantitation, noise growth with DRF."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from model.simulate import SimulatedStudy, simulate_study
from model.simulate.metrics import liver_mask, log_slope, region_cov, region_mean
from model.simulate.phantom import ORGAN_LABELS
from model.simulate.tracers import get_tracer

DRFS = [2.0, 4.0, 20.0, 100.0]


@pytest.fixture(scope="module")
def study() -> SimulatedStudy:
    """One tiny study with several DRFs, shared by the tests of this module."""
    return simulate_study(seed=11, drfs=DRFS, size="tiny")


def _arrays(s: SimulatedStudy) -> dict[str, np.ndarray]:
    """Every array of a study by name."""
    out: dict[str, np.ndarray] = {
        "full": s.full_dose_bqml,
        "truth": s.truth_bqml,
        "organs": s.organ_labels,
        "lesions": s.lesion_labels,
    }
    out.update({f"drf{d}": v for d, v in s.low_dose_bqml.items()})
    return out


def test_same_seed_is_bit_identical(study: SimulatedStudy) -> None:
    again = simulate_study(seed=11, drfs=DRFS, size="tiny")
    for name, array in _arrays(study).items():
        np.testing.assert_array_equal(array, _arrays(again)[name], err_msg=name)
    assert again.scanner == study.scanner
    assert again.tracer == study.tracer


def test_drf_image_does_not_depend_on_other_drfs_requested(study: SimulatedStudy) -> None:
    # Same counts; the batched sparse products may round differently in the last bits when
    # the batch has another width, which is far below any noise difference (tens of %).
    alone = simulate_study(seed=11, drfs=[20.0], size="tiny")
    assert alone.low_dose_counts[20.0] == study.low_dose_counts[20.0]
    np.testing.assert_allclose(alone.full_dose_bqml, study.full_dose_bqml, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(
        alone.low_dose_bqml[20.0], study.low_dose_bqml[20.0], rtol=1e-4, atol=1e-3
    )


def test_other_seed_differs(study: SimulatedStudy) -> None:
    other = simulate_study(seed=12, drfs=[20.0], size="tiny")
    assert other.tracer != study.tracer
    same_shape = other.truth_bqml.shape == study.truth_bqml.shape
    assert not same_shape or not np.array_equal(other.truth_bqml, study.truth_bqml)


def test_geometry_dtypes_and_keys_shared(study: SimulatedStudy) -> None:
    assert list(study.low_dose_bqml) == DRFS
    shape = study.truth_bqml.shape
    assert len(shape) == 3 and shape[1] == shape[2] == 40
    for name, array in _arrays(study).items():
        assert array.shape == shape, name
    for volume in [study.full_dose_bqml, study.truth_bqml, *study.low_dose_bqml.values()]:
        assert volume.dtype == np.float32
        assert np.isfinite(volume).all()
        assert volume.min() >= 0.0
    assert study.organ_labels.dtype == np.int16
    assert study.lesion_labels.dtype == np.int16
    assert study.spacing_mm == (20.0, 12.0, 12.0)


def test_head_is_at_high_z_and_bladder_low(study: SimulatedStudy) -> None:
    z = np.arange(study.organ_labels.shape[0])[:, None, None]
    brain = study.organ_labels == ORGAN_LABELS["grey_matter"]
    bladder = study.organ_labels == ORGAN_LABELS["bladder"]
    liver = study.organ_labels == ORGAN_LABELS["liver"]
    assert (
        np.broadcast_to(z, brain.shape)[brain].mean()
        > np.broadcast_to(z, liver.shape)[liver].mean()
    )
    assert (
        np.broadcast_to(z, liver.shape)[liver].mean()
        > np.broadcast_to(z, bladder.shape)[bladder].mean()
    )
    # Liver on the patient's right: low x index (x runs right to left).
    x = np.arange(study.organ_labels.shape[2])
    assert np.broadcast_to(x, liver.shape)[liver].mean() < (study.organ_labels.shape[2] - 1) / 2


def test_liver_suv_matches_tracer_table(study: SimulatedStudy) -> None:
    mask = liver_mask(study.organ_labels, study.lesion_labels)
    lo, hi = get_tracer("fdg").suv_range["liver"]
    suv = region_mean(study.truth_bqml, mask) * study.suv_per_bqml
    assert lo * 0.95 <= suv <= hi * 1.05


def test_liver_mean_unbiased_across_drfs(study: SimulatedStudy) -> None:
    mask = liver_mask(study.organ_labels, study.lesion_labels)
    truth = region_mean(study.truth_bqml, mask)
    full = region_mean(study.full_dose_bqml, mask)
    assert abs(full / truth - 1.0) < 0.03
    for drf in (2.0, 4.0, 20.0):
        assert abs(region_mean(study.low_dose_bqml[drf], mask) / full - 1.0) < 0.04, drf
    assert abs(region_mean(study.low_dose_bqml[100.0], mask) / full - 1.0) < 0.10


def test_liver_noise_grows_like_sqrt_drf(study: SimulatedStudy) -> None:
    mask = liver_mask(study.organ_labels, study.lesion_labels)
    covs = [region_cov(study.full_dose_bqml, mask)]
    covs += [region_cov(study.low_dose_bqml[d], mask) for d in DRFS]
    assert covs == sorted(covs)
    assert 0.06 <= covs[0] <= 0.16
    assert 0.3 <= log_slope([1.0, *DRFS], covs) <= 0.6


def test_low_dose_has_fewer_counts(study: SimulatedStudy) -> None:
    for drf, counts in study.low_dose_counts.items():
        assert counts <= study.full_dose_counts
        assert counts == pytest.approx(study.full_dose_counts / drf, rel=0.01)


def test_lesion_labels_match_lesion_table(study: SimulatedStudy) -> None:
    present = set(np.unique(study.lesion_labels)) - {0}
    assert present == set(study.lesion_suv) == set(study.lesion_diameter_mm)
    assert (study.organ_labels[study.lesion_labels > 0] > 0).all()
    for suv in study.lesion_suv.values():
        assert 2.0 <= suv <= 15.0
    for d in study.lesion_diameter_mm.values():
        assert 4.0 <= d <= 35.0


def test_activity_and_attenuation_only_inside_body(study: SimulatedStudy) -> None:
    outside = study.organ_labels == 0
    assert (study.truth_bqml[outside] == 0).all()
    assert study.mu_map_per_cm is not None
    assert (study.mu_map_per_cm[outside] == 0).all()
    lung = study.mu_map_per_cm[study.organ_labels == ORGAN_LABELS["lung"]]
    bone = study.mu_map_per_cm[study.organ_labels == ORGAN_LABELS["bone"]]
    assert lung.max() < 0.04 < 0.13 <= bone.min()


@pytest.mark.parametrize("tracer", ["psma", "dotatate"])
def test_other_tracers_change_uptake_not_anatomy(tracer: str) -> None:
    fdg = simulate_study(seed=5, drfs=[10.0], size="tiny")
    other = simulate_study(seed=5, drfs=[10.0], size="tiny", tracer=tracer)
    np.testing.assert_array_equal(fdg.organ_labels, other.organ_labels)
    brain = fdg.organ_labels == ORGAN_LABELS["grey_matter"]
    assert region_mean(other.truth_bqml, brain) * other.suv_per_bqml < 1.0
    assert other.tracer.radionuclide == "68Ga"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drfs": [0.5]}, "dose reduction factor"),
        ({"drfs": [4.0, 4.0]}, "distinct"),
        ({"drfs": [4.0], "size": "huge"}, "unknown size"),
        ({"drfs": [4.0], "tracer": "xyz"}, "unknown tracer"),
        ({"drfs": [4.0], "seed": -1}, "seed"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    args = {"seed": 1, "size": "tiny", **kwargs}
    with pytest.raises(ValueError, match=message):
        simulate_study(**args)  # type: ignore[arg-type]


def test_study_is_frozen(study: SimulatedStudy) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        study.seed = 3  # type: ignore[misc]
