"""Hot contrast recovery and background variability per lesion, the NEMA NU 2 way.

NEMA NU 2 (section 7, image quality) scores a reconstruction by two figures side by side:
the percent contrast of each hot sphere, ``CR = (C_H / C_B - 1) / (a_H / a_B - 1)``, and the
background variability ``BV = SD_k(C_B,k) / mean_k(C_B,k)`` over background ROIs of the
sphere's size. Either alone can be bought with the other (smoothing lowers BV and CR
together), so a denoiser is compared with a filter at the same BV (``model.evaluation.matched``).

Here the "spheres" are the phantom's lesions: ``C_H`` is the mean over the lesion's voxels,
``C_B`` the mean over a shell ``FAR_SHELL_MM`` around it in its host organ, off other lesions,
and ``a_H / a_B`` the same ratio in the truth. NEMA's background ROIs lie far from the
spheres; a shell a few voxels out would lie inside the blur of a 2 mm grid and count the
lesion's own spill-out as background, so the shell is set in millimetres, past the blur of
any clinical system. The 1.0 evaluation's lesion CRC (shell 2-3 voxels out, as
``model.simulate.metrics.lesion_recovery``) is kept beside it as ``near``, so that column
means what it meant. BV uses as many non-overlapping spheres of the lesion's diameter as fit
wholly in the host organ away from lesions (NEMA uses 60; at most 60 here, at least
``MIN_BV_ROIS``), falling back to the liver when the host organ is too small.

Everything that depends only on the phantom (voxel indices of lesion, shell and ROIs) is
found once per phantom, so scoring another output volume is a few gathers.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from model.simulate.phantom import ORGAN_LABELS

__all__ = [
    "MAX_BV_ROIS",
    "MIN_BV_ROIS",
    "SIZE_BINS",
    "ContrastRoi",
    "ContrastSite",
    "Region",
    "SizeBin",
    "background_rois",
    "background_variability",
    "contrast_recovery",
    "contrast_sites",
    "near_contrast_recovery",
    "size_bin",
]

MAX_BV_ROIS = 60  # as NEMA NU 2
MIN_BV_ROIS = 12
MIN_SHELL_VOXELS = 4
MIN_TRUE_CONTRAST = 0.05  # lesions barely above their background have no contrast to recover
FAR_SHELL_MM = (10.0, 20.0)  # NEMA background: from, to this distance past the lesion's edge

BoolVolume = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.intp]
Volume = npt.NDArray[np.floating]


@dataclass(frozen=True)
class SizeBin:
    """Lesion diameters ``low_mm < d <= high_mm`` (``low_mm`` included when ``closed_low``)."""

    key: str  # suffix of the table columns, e.g. "10_13"
    label: str
    low_mm: float
    high_mm: float
    closed_low: bool = False

    def holds(self, diameter_mm: float) -> bool:
        """Whether a lesion of ``diameter_mm`` belongs to this bin."""
        above = diameter_mm >= self.low_mm if self.closed_low else diameter_mm > self.low_mm
        return above and (diameter_mm <= self.high_mm or math.isinf(self.high_mm))


SIZE_BINS: tuple[SizeBin, ...] = (
    SizeBin("lt10", "<10 mm", -math.inf, math.nextafter(10.0, -math.inf)),
    SizeBin("10_13", "10-13 mm", 10.0, 13.0, closed_low=True),
    SizeBin("13_20", "13-20 mm", 13.0, 20.0),
    SizeBin("gt20", ">20 mm", 20.0, math.inf),
)


def size_bin(diameter_mm: float) -> SizeBin | None:
    """The bin of a lesion diameter; None for an unknown (NaN) diameter."""
    return next((b for b in SIZE_BINS if b.holds(diameter_mm)), None)


@dataclass(frozen=True)
class ContrastRoi:
    """A lesion's voxels and a background's, as flat indices, and their true ratio a_H / a_B."""

    lesion: IndexArray
    background: IndexArray
    true_ratio: float

    def recovery(self, image: Volume) -> float:
        """``(C_H / C_B - 1) / (a_H / a_B - 1)``: 1 recovers the true contrast, 0 loses it."""
        flat = image.ravel()
        lesion = float(flat[self.lesion].mean(dtype=np.float64))
        background = float(flat[self.background].mean(dtype=np.float64))
        return (lesion / background - 1.0) / (self.true_ratio - 1.0)


@dataclass(frozen=True)
class ContrastSite:
    """One lesion's NEMA ROIs: contrast against a far shell (``nema``) and the 1.0 near shell
    (``near``), each None where unusable, and the BV ROIs."""

    label: int
    diameter_mm: float
    organ: int  # host organ label
    nema: ContrastRoi | None
    near: ContrastRoi | None
    bv_rois: IndexArray  # (n_rois, voxels per ROI); zero rows when fewer than MIN_BV_ROIS fit
    bv_organ: int  # organ the BV ROIs lie in; 0 when none


def _padded_box(mask: BoolVolume, pad: int) -> tuple[slice, slice, slice]:
    """Bounding box of ``mask`` grown by ``pad`` voxels, clipped to the volume."""
    coords = np.nonzero(mask)
    lo = [max(0, int(c.min()) - pad) for c in coords]
    hi = [min(n, int(c.max()) + 1 + pad) for c, n in zip(coords, mask.shape, strict=True)]
    return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))


def _flat(mask: BoolVolume, box: tuple[slice, slice, slice], shape: Sequence[int]) -> IndexArray:
    """Flat indices in the whole volume of the voxels of a box-local mask."""
    local = np.nonzero(mask)
    coords = tuple(c + s.start for c, s in zip(local, box, strict=True))
    return np.asarray(np.ravel_multi_index(coords, tuple(shape)), dtype=np.intp)


def _near_shell(lesion: BoolVolume, host: BoolVolume, lesions: BoolVolume) -> BoolVolume:
    """Voxels 2-3 voxels from the lesion, in its host organ, off every lesion.

    The same shell as ``model.simulate.metrics.lesion_recovery`` (there computed on the
    whole volume; here on a box with room for three dilations, which gives the same voxels).
    """
    near = ndimage.binary_dilation(lesion, iterations=1)
    far = ndimage.binary_dilation(lesion, iterations=3)
    return np.asarray(far & ~near & host & ~lesions)


def _far_shell(
    lesion: BoolVolume, host: BoolVolume, off_lesions: BoolVolume, spacing_mm: Sequence[float]
) -> BoolVolume:
    """Voxels ``FAR_SHELL_MM`` past the lesion's edge, in its host organ, off other lesions."""
    distance = ndimage.distance_transform_edt(~lesion, sampling=list(spacing_mm))
    low, high = FAR_SHELL_MM
    return np.asarray((distance > low) & (distance <= high) & host & off_lesions)


def _roi(flat_truth: Volume, lesion: IndexArray, background: IndexArray) -> ContrastRoi | None:
    """The ROI pair, or None with too small a background or too little true contrast."""
    if len(background) < MIN_SHELL_VOXELS:
        return None
    ratio = float(
        flat_truth[lesion].mean(dtype=np.float64) / flat_truth[background].mean(dtype=np.float64)
    )
    return ContrastRoi(lesion, background, ratio) if ratio - 1.0 > MIN_TRUE_CONTRAST else None


def _ball_offsets(spacing_mm: Sequence[float], radius_mm: float) -> IndexArray:
    """Voxel offsets (n, 3) whose centres lie within ``radius_mm`` of the origin."""
    half = [int(radius_mm // s) for s in spacing_mm]
    grids = np.meshgrid(*(np.arange(-h, h + 1) for h in half), indexing="ij")
    offsets = np.stack([g.ravel() for g in grids], axis=1)
    distance = np.sqrt(((offsets * np.asarray(spacing_mm)) ** 2).sum(axis=1))
    return np.asarray(offsets[distance <= radius_mm], dtype=np.intp)


@dataclass(frozen=True)
class Region:
    """Where background spheres may go: a box and, in it, each voxel's distance (mm) to the
    nearest voxel outside the region (the box's border counts as outside)."""

    shape: tuple[int, ...]  # of the whole volume
    box: tuple[slice, slice, slice]
    distance_mm: npt.NDArray[np.float64]

    @classmethod
    def of(cls, allowed: BoolVolume, spacing_mm: Sequence[float]) -> Region | None:
        """The region of the True voxels of ``allowed``; None when there are none."""
        if not allowed.any():
            return None
        box = _padded_box(allowed, 0)
        # False border: the volume's edge counts as outside, so a sphere never leaves it.
        inside = np.pad(allowed[box], 1)
        distance = ndimage.distance_transform_edt(inside, sampling=list(spacing_mm))
        return cls(allowed.shape, box, np.asarray(distance[1:-1, 1:-1, 1:-1]))


def background_rois(
    allowed: BoolVolume | Region | None,
    spacing_mm: Sequence[float],
    diameter_mm: float,
    max_rois: int = MAX_BV_ROIS,
) -> IndexArray:
    """Flat voxel indices (n_rois, voxels) of spheres of ``diameter_mm`` wholly in ``allowed``.

    Centres lie on a grid with a pitch just over the diameter, so no two spheres share a
    voxel, at the grid phase that fits the most; with more than ``max_rois`` candidates an
    evenly spread subset is kept. ``allowed`` may be given as its :class:`Region`, which
    spheres of several sizes can share.
    """
    region = Region.of(allowed, spacing_mm) if isinstance(allowed, np.ndarray) else allowed
    radius = diameter_mm / 2.0
    if region is None or not radius > 0:
        return np.zeros((0, 0), dtype=np.intp)
    distance = region.distance_mm
    step = [int(diameter_mm // s) + 1 for s in spacing_mm]

    def fits(phase: tuple[int, ...]) -> npt.NDArray[np.bool_]:
        grid = distance[phase[0] :: step[0], phase[1] :: step[1], phase[2] :: step[2]]
        return np.asarray(grid > radius)

    # The grid's phase that fits the most spheres (strided views: one pass over the box).
    best = max(
        itertools.product(*(range(n) for n in step)),
        key=lambda phase: int(np.count_nonzero(fits(phase))),
    )
    origin = np.asarray([s.start + p for s, p in zip(region.box, best, strict=True)])
    centres = np.argwhere(fits(best)) * np.asarray(step) + origin
    if len(centres) > max_rois:
        centres = centres[np.linspace(0, len(centres) - 1, max_rois).round().astype(int)]
    voxels = centres[:, None, :] + _ball_offsets(spacing_mm, radius)[None, :, :]
    coords = tuple(voxels[..., axis] for axis in range(3))
    return np.asarray(np.ravel_multi_index(coords, region.shape), dtype=np.intp)


def _bv_rois(
    regions: Callable[[int], Region | None],
    host: int,
    spacing_mm: Sequence[float],
    diameter_mm: float,
) -> tuple[IndexArray, int]:
    """BV ROIs in the host organ, else in the liver; none when neither holds enough."""
    for organ in dict.fromkeys((host, ORGAN_LABELS["liver"])):
        rois = background_rois(regions(organ), spacing_mm, diameter_mm)
        if len(rois) >= MIN_BV_ROIS:
            return rois, organ
    return np.zeros((0, 0), dtype=np.intp), 0


def contrast_sites(
    truth: Volume,
    organ_labels: npt.NDArray[np.integer],
    lesion_labels: npt.NDArray[np.integer],
    lesion_diameter_mm: dict[int, float],
    spacing_mm: Sequence[float],
) -> list[ContrastSite]:
    """A site per lesion with a usable background and true contrast (ascending label).

    The box around a lesion is padded by 4 voxels for the near shell (which needs 3) and by
    the far shell's reach, so both shells are those of the whole volume.
    """
    lesions = lesion_labels > 0
    grown = ndimage.binary_dilation(lesions, structure=np.ones((3, 3, 3), dtype=bool))
    off_lesions = np.asarray(~grown)

    @functools.cache
    def regions(organ: int) -> Region | None:
        return Region.of((organ_labels == organ) & off_lesions, spacing_mm)

    flat_truth = truth.ravel()
    far_pad = [math.ceil(FAR_SHELL_MM[1] / s) + 1 for s in spacing_mm]
    sites = []
    for label in sorted(int(v) for v in np.unique(lesion_labels) if v > 0):
        mask = lesion_labels == label
        box = _padded_box(mask, max(4, *far_pad))
        lesion = mask[box]
        host = int(np.bincount(organ_labels[box][lesion]).argmax())
        in_host = organ_labels[box] == host
        lesion_index = _flat(lesion, box, mask.shape)
        near = _near_shell(lesion, in_host, lesions[box])
        far = _far_shell(lesion, in_host, off_lesions[box], spacing_mm)
        nema = _roi(flat_truth, lesion_index, _flat(far, box, mask.shape))
        near_roi = _roi(flat_truth, lesion_index, _flat(near, box, mask.shape))
        if nema is None and near_roi is None:
            continue
        diameter = float(lesion_diameter_mm.get(label, math.nan))
        rois, bv_organ = _bv_rois(regions, host, spacing_mm, diameter)
        sites.append(ContrastSite(label, diameter, host, nema, near_roi, rois, bv_organ))
    return sites


def contrast_recovery(image: Volume, site: ContrastSite) -> float:
    """NEMA contrast recovery against the far shell; NaN where that shell is unusable."""
    return site.nema.recovery(image) if site.nema is not None else math.nan


def near_contrast_recovery(image: Volume, site: ContrastSite) -> float:
    """The 1.0 lesion CRC (shell 2-3 voxels out); NaN where that shell is unusable."""
    return site.near.recovery(image) if site.near is not None else math.nan


def background_variability(image: Volume, rois: IndexArray) -> float:
    """SD over ROIs of the ROI means (``K - 1`` in the denominator, as NEMA) over their mean.

    NaN with fewer than ``MIN_BV_ROIS`` ROIs: a handful of ROIs says little about noise.
    """
    if rois.ndim != 2 or rois.shape[0] < MIN_BV_ROIS:
        return math.nan
    means = image.ravel()[rois].mean(axis=1, dtype=np.float64)
    return float(means.std(ddof=1) / means.mean())
