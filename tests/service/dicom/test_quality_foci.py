"""Focus search: the lazy ball-maximum test finds exactly what a whole-volume filter finds."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from scipy import ndimage

from service.dicom.quality import (
    FOCUS_COUNT,
    FOCUS_ISOCONTOUR,
    FOCUS_RADIUS_MM,
    focus_centres,
    sphere_offsets,
)


def _ball_footprint(spacing_mm: tuple[float, float, float]) -> npt.NDArray[np.bool_]:
    offsets = sphere_offsets(FOCUS_RADIUS_MM, spacing_mm)
    reach = offsets.max(axis=0)
    footprint = np.zeros(tuple(int(2 * r + 1) for r in reach), dtype=bool)
    footprint[tuple((offsets + reach).T)] = True
    return footprint


def _reference_centres(
    combined: npt.NDArray[np.float64], spacing_mm: tuple[float, float, float]
) -> list[tuple[int, ...]]:
    """The definition, computed the slow way: maxima of a whole-volume ball maximum filter."""
    ball = ndimage.maximum_filter(combined, footprint=_ball_footprint(spacing_mm))
    candidates = np.argwhere((combined == ball) & (combined > 0))
    ordered = candidates[np.argsort(-combined[tuple(candidates.T)], kind="stable")]
    chosen: list[npt.NDArray[np.int64]] = []
    covered = np.zeros(combined.shape, dtype=bool)
    spacing = np.asarray(spacing_mm)
    for index in ordered:
        if covered[tuple(index)]:
            continue
        if all(np.linalg.norm((index - c) * spacing) >= FOCUS_RADIUS_MM for c in chosen):
            chosen.append(index)
            if len(chosen) == FOCUS_COUNT:
                break
            labels, _ = ndimage.label(combined >= FOCUS_ISOCONTOUR * combined[tuple(index)])
            covered |= labels == labels[tuple(index)]
    return [tuple(int(v) for v in c) for c in chosen]


@pytest.mark.parametrize(
    "spacing_mm",
    [(2.0, 1.65, 1.65), (3.0, 4.07, 4.07), (5.0, 5.0, 5.0), (20.0, 12.0, 12.0)],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_foci_are_those_of_the_whole_volume_filter(
    spacing_mm: tuple[float, float, float], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    combined = ndimage.gaussian_filter(rng.gamma(2.0, 1.0, size=(14, 30, 26)), 1.0)
    combined[3, 4, 5] = 9.0  # a hot spot at a face: the mirrored border must agree
    combined[10, 20:24, 8:12] = 6.0  # a plateau: ties must resolve the same way
    centres = [tuple(int(v) for v in c) for c in focus_centres(combined, spacing_mm)]
    assert centres == _reference_centres(combined, spacing_mm)
    assert len(centres) >= 3


def test_a_spot_with_a_hotter_neighbour_in_its_ball_is_no_focus() -> None:
    # A hot A; B 10 mm from A (too close to be a focus, below A's 50 % contour); C 20 mm from
    # A but 10 mm from the hotter B: C is a local maximum, yet not the maximum of its ball.
    spacing = (5.0, 5.0, 5.0)
    combined = np.full((9, 9, 20), 0.1)
    a, b, c = (4, 4, 4), (4, 4, 6), (4, 4, 8)
    combined[a], combined[b], combined[c] = 10.0, 4.0, 3.0
    combined[4, 4, 16] = 2.0  # a genuine second focus far away
    centres = [tuple(int(v) for v in i) for i in focus_centres(combined, spacing)]
    assert centres[:2] == [a, (4, 4, 16)]
    assert c not in centres and b not in centres
    assert centres == _reference_centres(combined, spacing)
