"""The numbers of the quality report: reference-region noise, hottest foci, dose, trained range.

One module computes everything the PDF (``report_pdf``) and the SR (``report_sr``) show, so
the two documents can never disagree. All values are SUVbw (g/ml) from each series' own
headers (QIBA/UPICT pseudo-code in ``service.dicom.pet``); received and derived series share
them, so the same factor applies to both.

Definitions (the tests recompute them by brute force from these words):

* Sphere statistics use the voxels whose centres lie within the radius of the centre and
  inside the volume.
* SUVpeak at a voxel: the mean of the SUV in a sphere of 1 cm^3 (radius 6.2 mm) centred on it
  (PERCIST 1.0, Wahl et al., J Nucl Med 2009;50:122S).
* A focus is a sphere of ``FOCUS_RADIUS_MM`` around a local maximum of the SUVpeak map of
  either series (received or derived; so a focus the denoiser removed or created is listed
  too); its SUVmax is the largest voxel and its SUVpeak the largest SUVpeak centred inside it.
* The reference region is a 3 cm sphere (PERCIST's liver region): in the right liver lobe
  where a liver can be found, otherwise in the most homogeneous large region.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from scipy import ndimage
from skimage.segmentation import flood

from service.dicom import pet
from service.dicom.card_facts import (
    ModelCardFacts,
    RangeCheck,
    check_trained_range,
    drf_in_range,
    series_tracer,
)

__all__ = [
    "FOCUS_RADIUS_MM",
    "PEAK_RADIUS_MM",
    "REFERENCE_RADIUS_MM",
    "DoseCheck",
    "Focus",
    "ModelCardFacts",
    "QualityReport",
    "ReferenceMethod",
    "ReferenceRegion",
    "Sphere",
    "assess_quality",
    "dose_check",
    "peak_map",
    "sphere_offsets",
    "voxel_to_patient",
]

#: Radius of a 1 cm^3 sphere: (3 / (4 pi))^(1/3) cm.
PEAK_RADIUS_MM = 10.0 * (3.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
#: PERCIST reference region: a 3 cm diameter sphere.
REFERENCE_RADIUS_MM = 15.0
#: Foci closer than this are one focus; SUVmax and SUVpeak are sought within it.
FOCUS_RADIUS_MM = 15.0
#: Fraction of a focus's SUVpeak that bounds the hot region it stands for.
FOCUS_ISOCONTOUR = 0.5
#: How many foci the report lists.
FOCUS_COUNT = 10
#: Liver SUVmean range accepted as liver (PERCIST reports 1.0 to 3.5 for normal livers).
LIVER_SUV_RANGE = (1.0, 3.5)
#: A liver candidate region must hold at least this much uniform tissue.
LIVER_MIN_ML = 400.0
#: Voxels within this fraction of the candidate's mean count as the same tissue.
LIVER_UNIFORM_FRACTION = 0.25
#: Organs tried before giving up on finding a liver.
LIVER_MAX_REGIONS = 30
#: Share of a liver candidate that must lie on the patient's right.
LIVER_RIGHT_FRACTION = 0.7
#: Below this smoothed SUV a voxel is outside the body (air, table).
BODY_SUV = 0.2
#: EANM FDG PET/CT guideline 2.0 (Boellaard et al., EJNMMI 2015;42:328): injected MBq/kg times
#: minutes per bed of 7 (bed overlap up to 30 %) for a full-dose whole-body study.
FDG_FULL_DOSE_MBQ_MIN_PER_KG = 7.0


class ReferenceMethod(enum.Enum):
    """How the reference region was found; the report names it."""

    LIVER = "liver"
    HOMOGENEOUS = "homogeneous"


@dataclass(frozen=True)
class Sphere:
    """A sphere on the voxel grid and in patient coordinates (mm, DICOM LPS)."""

    index: tuple[int, int, int]
    centre_mm: tuple[float, float, float]
    radius_mm: float


@dataclass(frozen=True)
class ReferenceRegion:
    """Background noise before and after in one sphere."""

    method: ReferenceMethod
    sphere: Sphere
    mean_before: float
    sd_before: float
    mean_after: float
    sd_after: float
    voxels: int

    @property
    def cov_before_pct(self) -> float:
        """Coefficient of variation of the received series, in %."""
        return 100.0 * self.sd_before / self.mean_before if self.mean_before > 0 else math.nan

    @property
    def cov_after_pct(self) -> float:
        """Coefficient of variation of the derived series, in %."""
        return 100.0 * self.sd_after / self.mean_after if self.mean_after > 0 else math.nan


def _change_pct(before: float, after: float) -> float:
    return 100.0 * (after - before) / before if before > 0 else math.nan


@dataclass(frozen=True)
class Focus:
    """One hot focus: SUVmax and SUVpeak in the received and in the derived series."""

    rank: int
    sphere: Sphere
    suvmax_before: float
    suvmax_after: float
    suvpeak_before: float
    suvpeak_after: float

    @property
    def suvmax_change_pct(self) -> float:
        """(after - before) / before in %."""
        return _change_pct(self.suvmax_before, self.suvmax_after)

    @property
    def suvpeak_change_pct(self) -> float:
        """(after - before) / before in %."""
        return _change_pct(self.suvpeak_before, self.suvpeak_after)

    def flagged(self, limit_pct: float) -> bool:
        """True when SUVmax or SUVpeak changed by more than ``limit_pct`` either way."""
        changes = (self.suvmax_change_pct, self.suvpeak_change_pct)
        return any(not math.isfinite(c) or abs(c) > limit_pct for c in changes)


@dataclass(frozen=True)
class DoseCheck:
    """The node's DRF estimate beside the dose the headers imply."""

    injected_mbq_per_kg: float | None
    frame_duration_s: float | None
    header_drf: float | None
    header_note: str
    drf_estimate: float | None
    trained_drf_range: tuple[float, float] | None

    def in_range(self, drf: float | None) -> bool | None:
        """Whether ``drf`` lies inside the trained range (None when either is unknown).

        The same comparison as the range check of the derived series (``card_facts``).
        """
        return drf_in_range(self.trained_drf_range, drf)


@dataclass(frozen=True)
class QualityReport:
    """Everything the quality report says about one derived series."""

    suv_per_bqml: float
    reference: ReferenceRegion
    foci: tuple[Focus, ...]
    change_limit_pct: float
    clipped_voxels: int
    dose: DoseCheck
    trained_range: RangeCheck

    @property
    def flagged_foci(self) -> int:
        """How many foci changed beyond the limit."""
        return sum(focus.flagged(self.change_limit_pct) for focus in self.foci)

    def summary(self) -> dict[str, object]:
        """Small JSON-ready digest for the status page and ``unipet-node status``."""
        return {
            "reference_method": self.reference.method.value,
            "reference_cov_before_pct": round(self.reference.cov_before_pct, 2),
            "reference_cov_after_pct": round(self.reference.cov_after_pct, 2),
            "foci": len(self.foci),
            "flagged_foci": self.flagged_foci,
            "change_limit_pct": self.change_limit_pct,
            "clipped_voxels": self.clipped_voxels,
            "trained_range": self.trained_range.note,
        }


@dataclass(frozen=True)
class BodyBox:
    """The part of the volume the report measures: the body of either series and a margin.

    A whole-body matrix is mostly air, and every measure of the report (reference sphere,
    foci, SUVpeak) lies in the body, so the volumes are cut to the body's bounding box
    widened by the largest sphere radius: each sphere and local filter near the body sees
    the same voxels as in the whole volume, at a fraction of the cost.
    """

    shape: tuple[int, int, int]  # of the whole volume
    start: tuple[int, int, int]
    stop: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Index of the box in the whole volume."""
        return tuple(slice(a, b) for a, b in zip(self.start, self.stop, strict=True))  # type: ignore[return-value]

    def whole_index(self, index: Sequence[int] | npt.NDArray[np.int64]) -> tuple[int, int, int]:
        """A voxel of the box as a voxel of the whole volume."""
        k, j, i = (int(v) + a for v, a in zip(index, self.start, strict=True))
        return k, j, i

    @classmethod
    def around(
        cls,
        received_bqml: npt.NDArray[np.floating],
        derived_bqml: npt.NDArray[np.floating],
        suv_per_bqml: float,
        spacing_mm: Sequence[float],
    ) -> BodyBox:
        """The box around the body (3x3x3 mean above ``BODY_SUV``) of either series."""
        shape = (received_bqml.shape[0], received_bqml.shape[1], received_bqml.shape[2])
        threshold = BODY_SUV / suv_per_bqml
        body = ndimage.uniform_filter(np.asarray(received_bqml, np.float32), 3) > threshold
        body |= ndimage.uniform_filter(np.asarray(derived_bqml, np.float32), 3) > threshold
        if not body.any():
            return cls(shape, (0, 0, 0), shape)
        margin_mm = max(FOCUS_RADIUS_MM, REFERENCE_RADIUS_MM, PEAK_RADIUS_MM)
        start, stop = [], []
        for axis, spacing in enumerate(spacing_mm):
            other = tuple(a for a in range(3) if a != axis)
            present = np.flatnonzero(body.any(axis=other))
            margin = math.ceil(margin_mm / float(spacing)) + 1
            start.append(max(0, int(present[0]) - margin))
            stop.append(min(shape[axis], int(present[-1]) + 1 + margin))
        return cls(shape, (start[0], start[1], start[2]), (stop[0], stop[1], stop[2]))


def sphere_offsets(radius_mm: float, spacing_mm: Sequence[float]) -> npt.NDArray[np.int64]:
    """Voxel offsets (n, 3) whose centres lie within ``radius_mm`` of the origin."""
    reach = [math.floor(radius_mm / s) for s in spacing_mm]
    grids = np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij")
    offsets = np.stack([g.ravel() for g in grids], axis=1)
    distance_sq = sum((offsets[:, a] * spacing_mm[a]) ** 2 for a in range(3))
    return offsets[distance_sq <= radius_mm**2 + 1e-9]


def _ball(radius_mm: float, spacing_mm: Sequence[float]) -> npt.NDArray[np.float64]:
    offsets = sphere_offsets(radius_mm, spacing_mm)
    reach = offsets.max(axis=0)
    kernel = np.zeros(tuple(int(2 * r + 1) for r in reach), dtype=np.float64)
    kernel[tuple((offsets + reach).T)] = 1.0
    return kernel


def peak_map(
    *volumes: npt.NDArray[np.floating], spacing_mm: Sequence[float]
) -> tuple[npt.NDArray[np.float64], ...]:
    """SUVpeak centred on every voxel of each volume (one grid): mean over the in-volume
    voxels of a 1 cm^3 sphere. The in-volume count is the same for all, so made once."""
    kernel = _ball(PEAK_RADIUS_MM, spacing_mm)
    count = ndimage.correlate(np.ones(volumes[0].shape), kernel, mode="constant", cval=0.0)
    maps = []
    for suv in volumes:
        values = np.asarray(suv, dtype=np.float64)
        total = ndimage.correlate(values, kernel, mode="constant", cval=0.0)
        maps.append(np.asarray(total / count, dtype=np.float64))
    return tuple(maps)


def _sphere_mask(
    shape: tuple[int, ...],
    index: Sequence[int] | npt.NDArray[np.int64],
    radius_mm: float,
    spacing_mm: Sequence[float],
) -> npt.NDArray[np.bool_]:
    mask = np.zeros(shape, dtype=bool)
    points = sphere_offsets(radius_mm, spacing_mm) + np.asarray(index)
    inside = np.all((points >= 0) & (points < np.asarray(shape)), axis=1)
    mask[tuple(points[inside].T)] = True
    return mask


def voxel_to_patient(datasets: Sequence[Dataset], index: Sequence[int]) -> tuple[float, ...]:
    """Patient coordinates (mm) of a voxel centre (PS3.3 C.7.6.2.1.1 equation)."""
    k, j, i = (int(v) for v in index)
    ds = datasets[k]
    origin = np.asarray([float(v) for v in ds.ImagePositionPatient])
    row_direction, column_direction = pet.image_orientation(ds)
    row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
    point = origin + row_direction * i * column_spacing + column_direction * j * row_spacing
    return tuple(float(v) for v in point)


def _sphere(
    datasets: Sequence[Dataset], index: Sequence[int] | npt.NDArray[np.int64], radius_mm: float
) -> Sphere:
    idx = (int(index[0]), int(index[1]), int(index[2]))
    return Sphere(idx, voxel_to_patient(datasets, idx), radius_mm)  # type: ignore[arg-type]


def _box_stats(
    suv: npt.NDArray[np.float64], radius_mm: float, spacing_mm: Sequence[float]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Local mean and SD in a cube of the sphere's volume: fast enough to scan every centre."""
    side_mm = (4.0 / 3.0 * math.pi * radius_mm**3) ** (1.0 / 3.0)
    size = [max(1, round(side_mm / s)) for s in spacing_mm]
    mean = ndimage.uniform_filter(suv, size=size, mode="nearest")
    mean_sq = ndimage.uniform_filter(suv * suv, size=size, mode="nearest")
    return mean, np.sqrt(np.clip(mean_sq - mean * mean, 0.0, None))


def _patient_x_right_of_centre(
    datasets: Sequence[Dataset], shape: tuple[int, ...]
) -> npt.NDArray[np.bool_]:
    """Voxels on the patient's right of the volume centre (DICOM +X is patient left)."""
    k0, j0, i0 = (n // 2 for n in shape)
    centre_x = voxel_to_patient(datasets, (k0, j0, i0))[0]
    step_x = voxel_to_patient(datasets, (k0, j0, min(i0 + 1, shape[2] - 1)))[0] - centre_x
    step_y = voxel_to_patient(datasets, (k0, min(j0 + 1, shape[1] - 1), i0))[0] - centre_x
    i = np.arange(shape[2])[None, None, :] - i0
    j = np.arange(shape[1])[None, :, None] - j0
    x = centre_x + i * step_x + j * step_y
    return np.broadcast_to(x < centre_x, shape)


def _find_liver(
    suv: npt.NDArray[np.float64],
    mean: npt.NDArray[np.float64],
    cov: npt.NDArray[np.float64],
    candidates: npt.NDArray[np.bool_],
    body: npt.NDArray[np.bool_],
    right: npt.NDArray[np.bool_],
    voxel_ml: float,
) -> tuple[int, int, int] | None:
    """The most homogeneous centre in a large uniform organ of liver uptake on the right."""
    low, high = LIVER_SUV_RANGE
    liver_like = candidates & right & (mean >= low) & (mean <= high)
    if not liver_like.any():
        return None
    smoothed = ndimage.gaussian_filter(suv, sigma=2.0)
    order = np.argsort(np.where(liver_like, cov, np.inf), axis=None)
    tested = np.zeros(suv.shape, dtype=bool)
    regions = 0
    for flat in order:
        if not liver_like.flat[flat] or regions >= LIVER_MAX_REGIONS:
            break
        if tested.flat[flat]:
            continue
        index = np.unravel_index(flat, suv.shape)
        level = mean[index]
        uniform = body & (np.abs(smoothed - level) <= LIVER_UNIFORM_FRACTION * level)
        labels, _ = ndimage.label(uniform)
        organ = labels == labels[index] if labels[index] else np.zeros_like(uniform)
        organ.flat[flat] = True
        tested |= organ
        regions += 1
        volume_ml = float(organ.sum()) * voxel_ml
        # A uniform region that is most of the body is a phantom's body, not a liver; a
        # midline organ (brain) is as much left as right.
        if (
            volume_ml >= LIVER_MIN_ML
            and organ.sum() < 0.5 * body.sum()
            and right[organ].mean() > LIVER_RIGHT_FRACTION
        ):
            return (int(index[0]), int(index[1]), int(index[2]))
    return None


def _reference_region(
    before: npt.NDArray[np.float64],
    after: npt.NDArray[np.float64],
    datasets: Sequence[Dataset],
    spacing_mm: Sequence[float],
    box: BodyBox,
) -> ReferenceRegion:
    """PERCIST-style reference sphere, in the right liver lobe where one can be found.

    ``before`` and ``after`` are the volumes cut to ``box``; the sphere is reported in the
    whole volume's voxels and patient coordinates.
    """
    body = ndimage.uniform_filter(before, size=3, mode="nearest") > BODY_SUV
    body = ndimage.binary_fill_holes(body) if body.any() else np.ones_like(body)
    depth = ndimage.distance_transform_edt(np.pad(body, 1), sampling=spacing_mm)[1:-1, 1:-1, 1:-1]
    radius = min(REFERENCE_RADIUS_MM, float(depth.max()))
    candidates = body & (depth >= radius)
    mean, sd = _box_stats(before, radius, spacing_mm)
    cov = np.where(mean > 0, sd / np.maximum(mean, 1e-12), np.inf)
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    right = _patient_x_right_of_centre(datasets, box.shape)[box.slices]
    index = _find_liver(before, mean, cov, candidates, body, right, voxel_ml)
    method = ReferenceMethod.LIVER
    if index is None:
        method = ReferenceMethod.HOMOGENEOUS
        # Background-like: within a factor 2 of the body's median uptake, so neither cold lung
        # nor a hot bladder.
        level = float(np.median(mean[candidates])) if candidates.any() else 0.0
        usable = candidates & (mean >= 0.5 * level) & (mean <= 2.0 * level)
        flat = int(np.argmin(np.where(usable, cov, np.inf)))
        index = tuple(int(v) for v in np.unravel_index(flat, before.shape))  # type: ignore[assignment]
    assert index is not None
    mask = _sphere_mask(before.shape, index, radius, spacing_mm)
    return ReferenceRegion(
        method=method,
        sphere=_sphere(datasets, box.whole_index(index), radius),
        mean_before=float(before[mask].mean()),
        sd_before=float(before[mask].std()),
        mean_after=float(after[mask].mean()),
        sd_after=float(after[mask].std()),
        voxels=int(mask.sum()),
    )


def _near_maxima(
    combined: npt.NDArray[np.float64], spacing_mm: Sequence[float]
) -> npt.NDArray[np.bool_]:
    """Voxels no neighbour of which (the 3x3x3 part of the focus ball) is hotter.

    Every maximum of a whole focus ball is one of them, so they are the candidates for it.
    """
    ball = _ball(FOCUS_RADIUS_MM, spacing_mm) > 0
    centre = [n // 2 for n in ball.shape]
    near = ball[tuple(slice(max(c - 1, 0), c + 2) for c in centre)]
    return np.asarray(combined == ndimage.maximum_filter(combined, footprint=near))


def _is_ball_maximum(
    combined: npt.NDArray[np.float64],
    index: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
) -> bool:
    """Whether no voxel of the ball (``offsets``) around ``index`` is hotter than it.

    Beyond the volume's faces the values are mirrored as scipy's ``maximum_filter`` mirrors
    them (mode "reflect", period twice the size), so this is that filter at one voxel.
    """
    shape = np.asarray(combined.shape)
    points = np.mod(offsets + index, 2 * shape)
    points = np.where(points >= shape, 2 * shape - 1 - points, points)
    return bool(combined[tuple(points.T)].max() <= combined[tuple(index)])


def focus_centres(
    combined: npt.NDArray[np.float64], spacing_mm: Sequence[float]
) -> list[npt.NDArray[np.int64]]:
    """Centres of the ``FOCUS_COUNT`` hottest foci of an SUVpeak map, hottest first.

    A focus is a voxel that no voxel of its ``FOCUS_RADIUS_MM`` ball exceeds, at least that
    far from every hotter focus and outside the 50 % isocontour region of each of them.
    """
    ball_offsets = sphere_offsets(FOCUS_RADIUS_MM, spacing_mm)
    spacing = np.asarray(spacing_mm)
    candidates = np.argwhere(_near_maxima(combined, spacing_mm) & (combined > 0))
    ordered = candidates[np.argsort(-combined[tuple(candidates.T)], kind="stable")]
    chosen: list[npt.NDArray[np.int64]] = []
    covered = np.zeros(combined.shape, dtype=bool)
    for index in ordered:
        if covered[tuple(index)]:
            continue
        if not all(np.linalg.norm((index - c) * spacing) >= FOCUS_RADIUS_MM for c in chosen):
            continue
        # Only now the costly test: no voxel of its focus ball is hotter (a focus is the
        # maximum of its ball; testing the few voxels that get this far, not every voxel,
        # keeps 1.65 mm grids, with thousands of voxels per ball, fast).
        if not _is_ball_maximum(combined, index, ball_offsets):
            continue
        chosen.append(index)
        if len(chosen) == FOCUS_COUNT:
            break
        # An extended hot region (bladder, brain) is one focus: everything connected to
        # it above half its SUVpeak (a 50 % isocontour) is covered by it.
        level = FOCUS_ISOCONTOUR * combined[tuple(index)]
        seed = tuple(int(v) for v in index)
        covered |= flood(combined >= level, seed, connectivity=1)  # type: ignore[no-untyped-call]
    return chosen


def _foci(
    before: npt.NDArray[np.float64],
    after: npt.NDArray[np.float64],
    datasets: Sequence[Dataset],
    spacing_mm: Sequence[float],
    box: BodyBox,
) -> tuple[Focus, ...]:
    """The ten hottest foci of either series, at least ``FOCUS_RADIUS_MM`` apart (volumes
    cut to ``box``; spheres reported in the whole volume)."""
    peak_before, peak_after = peak_map(before, after, spacing_mm=spacing_mm)
    combined = np.maximum(peak_before, peak_after)
    chosen = focus_centres(combined, spacing_mm)
    foci = []
    for rank, index in enumerate(chosen, start=1):
        mask = _sphere_mask(before.shape, index, FOCUS_RADIUS_MM, spacing_mm)
        foci.append(
            Focus(
                rank=rank,
                sphere=_sphere(datasets, box.whole_index(index), FOCUS_RADIUS_MM),
                suvmax_before=float(before[mask].max()),
                suvmax_after=float(after[mask].max()),
                suvpeak_before=float(peak_before[mask].max()),
                suvpeak_after=float(peak_after[mask].max()),
            )
        )
    return tuple(foci)


def _is_fdg(radiopharmaceutical: Dataset) -> bool:
    name = str(radiopharmaceutical.get("Radiopharmaceutical", "") or "").lower()
    codes = radiopharmaceutical.get("RadiopharmaceuticalCodeSequence") or []
    # CID 4021: 35321007 is Fluorodeoxyglucose F^18^ (SCT).
    coded = any(str(item.get("CodeValue", "")) == "35321007" for item in codes)
    return coded or "fdg" in name or "fluorodeoxyglucose" in name


def dose_check(ds: Dataset, drf_estimate: float | None, card: ModelCardFacts | None) -> DoseCheck:
    """Injected activity per kg and frame duration from the headers, and the DRF they imply.

    The implied DRF compares MBq/kg x minutes per bed with the EANM full-dose figure; it is
    only stated for FDG, the tracer that figure is for.
    """
    weight = float(ds.get("PatientWeight") or 0.0)
    items = ds.get("RadiopharmaceuticalInformationSequence") or []
    item = items[0] if items else Dataset()
    dose_bq = float(item.get("RadionuclideTotalDose") or 0.0)
    per_kg = dose_bq / 1e6 / weight if weight > 0 and dose_bq > 0 else None
    duration_ms = float(ds.get("ActualFrameDuration") or 0.0)
    duration_s = duration_ms / 1000.0 if duration_ms > 0 else None
    header_drf: float | None = None
    if per_kg is None or duration_s is None:
        note = "activity, weight or frame duration missing from the headers"
    elif not _is_fdg(item):
        note = "no full-dose reference for this radiopharmaceutical"
    else:
        header_drf = FDG_FULL_DOSE_MBQ_MIN_PER_KG / (per_kg * duration_s / 60.0)
        note = (
            f"EANM 2015 FDG full dose {FDG_FULL_DOSE_MBQ_MIN_PER_KG:g} MBq min/kg per bed "
            f"/ ({per_kg:.2f} MBq/kg x {duration_s / 60.0:.2f} min)"
        )
    return DoseCheck(
        injected_mbq_per_kg=per_kg,
        frame_duration_s=duration_s,
        header_drf=header_drf,
        header_note=note,
        drf_estimate=drf_estimate,
        trained_drf_range=card.trained_drf_range if card is not None else None,
    )


def assess_quality(
    received_bqml: npt.NDArray[np.floating],
    derived_bqml: npt.NDArray[np.floating],
    datasets: Sequence[Dataset],
    spacing_mm: Sequence[float],
    *,
    drf_estimate: float | None,
    card: ModelCardFacts | None,
    change_limit_pct: float = 10.0,
    clipped_voxels: int | None = None,
) -> QualityReport:
    """Compute the quality report of one derived series against its received series.

    Args:
        received_bqml: The received volume (z, y, x) in Bq/ml, slices feet to head.
        derived_bqml: The derived volume as stored (same grid), Bq/ml.
        datasets: Headers of the received slices in the same order (geometry and SUV).
        spacing_mm: (slice, row, column) spacing.
        drf_estimate: The denoiser's DRF estimate, if it made one.
        card: Facts from the model card, if the algorithm has one.
        change_limit_pct: Foci whose SUVmax or SUVpeak change more than this are flagged.
        clipped_voxels: Voxels set to 0 when writing; counted from ``derived_bqml`` if None.

    Raises:
        ValueError: The volumes differ in shape or do not match the headers.
        PetHeaderError: The headers do not allow SUVbw.
    """
    if received_bqml.shape != derived_bqml.shape or len(datasets) != received_bqml.shape[0]:
        raise ValueError(
            f"received {received_bqml.shape}, derived {derived_bqml.shape} and "
            f"{len(datasets)} headers do not describe one grid"
        )
    factor = pet.suv_bw_factor(datasets[0])
    box = BodyBox.around(received_bqml, derived_bqml, factor, spacing_mm)
    before = np.asarray(received_bqml[box.slices], dtype=np.float64) * factor
    after = np.asarray(derived_bqml[box.slices], dtype=np.float64) * factor
    clipped = int(np.count_nonzero(derived_bqml < 0)) if clipped_voxels is None else clipped_voxels
    return QualityReport(
        suv_per_bqml=factor,
        reference=_reference_region(before, after, datasets, spacing_mm, box),
        foci=_foci(before, after, datasets, spacing_mm, box),
        change_limit_pct=change_limit_pct,
        clipped_voxels=clipped,
        dose=dose_check(datasets[0], drf_estimate, card),
        trained_range=check_trained_range(
            card.ranges if card is not None else None,
            drf_estimate=drf_estimate,
            spacing_mm=spacing_mm,
            tracer=series_tracer(datasets[0]),
        ),
    )
