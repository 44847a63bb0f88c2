"""False hot spots: a planted focus counts outside true lesions, not inside or below 3x liver."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from model.evaluation.hotspots import count_hot_spots, true_hot_mask

SPACING = (4.0, 4.0, 4.0)


def _scene() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_], npt.NDArray[np.int16]]:
    """A flat liver (SUV 1) in a flat body (SUV 0.5), with one lesion far from its centre."""
    image = np.full((20, 40, 40), 0.5, dtype=np.float32)
    liver = np.zeros(image.shape, dtype=bool)
    liver[5:15, 5:20, 5:20] = True
    image[liver] = 1.0
    lesions = np.zeros(image.shape, dtype=np.int16)
    lesions[10, 30:32, 30:32] = 1
    return image, liver, lesions


def test_a_focus_outside_lesions_counts_once() -> None:
    image, liver, lesions = _scene()
    excluded = true_hot_mask(image, lesions, liver, SPACING)
    assert count_hot_spots(image, liver, excluded) == 0
    image[10, 30, 10] = 4.0  # above 3 x liver mean, off the lesion
    assert count_hot_spots(image, liver, excluded) == 1


def test_a_focus_in_or_beside_a_lesion_is_no_false_hot_spot() -> None:
    image, liver, lesions = _scene()
    excluded = true_hot_mask(image, lesions, liver, SPACING)
    image[10, 31, 31] = 6.0
    image[10, 32, 30] = 6.0  # one voxel off the lesion: within the margin
    assert count_hot_spots(image, liver, excluded) == 0


def test_a_focus_below_three_times_the_liver_mean_does_not_count() -> None:
    image, liver, lesions = _scene()
    excluded = true_hot_mask(image, lesions, liver, SPACING)
    image[10, 30, 10] = 2.9
    assert count_hot_spots(image, liver, excluded) == 0


def test_truly_hot_tissue_is_excluded_and_a_plateau_counts_once() -> None:
    truth, liver, lesions = _scene()
    truth[2:4, 30:36, 30:36] = 5.0  # a hot organ, bladder-like
    excluded = true_hot_mask(truth, lesions, liver, SPACING)
    image = truth.copy()
    image[3, 33, 33] = 7.0  # noise peak inside the hot organ
    image[17, 10, 34:36] = 4.0  # a two-voxel plateau in cold tissue
    assert count_hot_spots(image, liver, excluded) == 1


def test_no_liver_gives_no_threshold() -> None:
    image, liver, _ = _scene()
    with pytest.raises(ValueError, match="no liver"):
        count_hot_spots(image, np.zeros_like(liver), np.zeros_like(liver))
