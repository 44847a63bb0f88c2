"""Activity from organ labels: per-organ SUV, smooth texture, and lesions with partial volume.

A flat organ would let a denoiser learn that every organ is a constant; real uptake varies
within organs by a few to ~10 % on a centimetre scale, so each organ is modulated by smooth
random fields. Lesions are rasterised with sub-voxel coverage so a 5 mm lesion on 12 mm
voxels keeps its true total activity, which makes recovery metrics meaningful.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch

from model.simulate.geometry import Grid
from model.simulate.phantom import ORGAN_LABELS

__all__ = ["TEXTURE_COV", "add_lesions", "organ_activity", "smooth_field"]

FloatVolume = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int16]

# Within-organ coefficient of variation of the true uptake (texture, not noise). Bowel and
# stomach are the most heterogeneous (peristalsis, content); blood and urine nearly uniform.
TEXTURE_COV: dict[str, float] = {
    "fat": 0.10,
    "muscle": 0.10,
    "grey_matter": 0.07,
    "white_matter": 0.06,
    "lung": 0.10,
    "myocardium": 0.10,
    "blood_pool": 0.03,
    "liver": 0.06,
    "spleen": 0.05,
    "kidney": 0.08,
    "renal_pelvis": 0.10,
    "bladder": 0.02,
    "bone": 0.10,
    "marrow": 0.10,
    "stomach": 0.15,
    "bowel": 0.30,
    "salivary": 0.08,
}

# Where lesions grow, with relative frequency: liver metastases, lung nodules, lymph nodes
# (soft tissue), bone marrow metastases, spleen and bowel.
LESION_HOSTS: dict[str, float] = {
    "liver": 0.25,
    "lung": 0.2,
    "muscle": 0.2,
    "marrow": 0.15,
    "spleen": 0.1,
    "bowel": 0.1,
}
LESION_SUV_RANGE = (2.0, 15.0)
LESION_DIAMETER_MM = (5.0, 30.0)


def smooth_field(grid: Grid, rng: np.random.Generator, corr_mm: float) -> FloatVolume:
    """Zero-mean, unit-variance random field with correlation length ``corr_mm``.

    Drawn on a coarse lattice and interpolated, so the cost does not grow with the grid.
    """
    extent = np.array(grid.shape) * np.array(grid.spacing_mm)
    coarse = tuple(math.ceil(e / (corr_mm / 2.0)) + 3 for e in extent)
    noise = rng.standard_normal(coarse).astype(np.float32)
    t = torch.from_numpy(noise)[None, None]
    kernel = torch.tensor([0.25, 0.5, 0.25])
    for dim in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[dim + 2] = 3
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = 1
        t = torch.nn.functional.conv3d(
            torch.nn.functional.pad(t, pad, mode="replicate"), kernel.view(shape)
        )
    field = torch.nn.functional.interpolate(
        t[:, :, 1:-1, 1:-1, 1:-1], size=grid.shape, mode="trilinear", align_corners=False
    )[0, 0].numpy()
    field = field - field.mean()
    return np.asarray(field / max(float(field.std()), 1e-6), dtype=np.float32)


def organ_activity(
    labels: Labels, organ_suv: dict[str, float], grid: Grid, rng: np.random.Generator
) -> FloatVolume:
    """SUV volume: each organ's mean SUV times ``1 + CoV * texture``, never negative."""
    lut = np.zeros(max(ORGAN_LABELS.values()) + 1, dtype=np.float32)
    cov = np.zeros_like(lut)
    for name, code in ORGAN_LABELS.items():
        lut[code] = organ_suv[name]
        cov[code] = TEXTURE_COV[name]
    coarse = smooth_field(grid, rng, 40.0)
    fine = smooth_field(grid, rng, 12.0)
    texture = 0.6 * coarse + 0.8 * fine
    suv = lut[labels] * (1.0 + cov[labels] * texture)
    return np.asarray(np.clip(suv, 0.0, None), dtype=np.float32)


def _coverage(
    grid: Grid, center: tuple[float, float, float], semi: tuple[float, float, float], k: int = 4
) -> tuple[tuple[slice, slice, slice], npt.NDArray[np.float32]]:
    """Fraction of each voxel inside an ellipsoid, from ``k**3`` sub-samples per voxel."""
    dz, dy, dx = grid.spacing_mm
    pad = (semi[0] + dz, semi[1] + dy, semi[2] + dx)
    box = grid.box(center, pad)
    s, y, x = grid.coords(box)
    offsets = (np.arange(k) + 0.5) / k - 0.5
    shape = (s.shape[0], y.shape[1], x.shape[2])
    frac = np.zeros(shape, dtype=np.float32)
    for oz in offsets:
        ts = ((s + oz * dz - center[0]) / semi[0]) ** 2
        for oy in offsets:
            ty = ((y + oy * dy - center[1]) / semi[1]) ** 2
            tx = ((x[..., None] + offsets * dx - center[2]) / semi[2]) ** 2
            inside = (ts[..., None] + ty[..., None] + tx) <= 1.0
            frac += inside.sum(axis=-1, dtype=np.float32)
    return box, frac / float(k**3)


def _lesion_suv(rng: np.random.Generator, background: float) -> float:
    """Lesion SUV: log-uniform in 2-15, a third of them low contrast (1.3-2x background)."""
    lo, hi = LESION_SUV_RANGE
    if rng.random() < 0.33:
        suv = background * rng.uniform(1.3, 2.0)
    else:
        suv = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return float(np.clip(max(suv, 1.3 * background), lo, hi))


def add_lesions(
    grid: Grid,
    labels: Labels,
    suv: FloatVolume,
    organ_suv: dict[str, float],
    rng: np.random.Generator,
) -> tuple[Labels, dict[int, float], dict[int, float]]:
    """Insert 0-8 lesions into ``suv`` in place.

    Returns lesion labels, the true SUV of each lesion and its diameter (mm, the diameter of
    the sphere of equal volume).

    A voxel is labelled with a lesion where at least half of it is covered (and the most
    covered voxel always), so even a 5 mm lesion on a coarse grid has a label.
    """
    lesion_labels: Labels = np.zeros(grid.shape, dtype=np.int16)
    lesion_suv: dict[int, float] = {}
    diameters: dict[int, float] = {}
    hosts = [
        h
        for h in LESION_HOSTS
        if 1.3 * organ_suv[h] < LESION_SUV_RANGE[1] and np.any(labels == ORGAN_LABELS[h])
    ]
    if not hosts:
        return lesion_labels, lesion_suv, diameters
    weights = np.array([LESION_HOSTS[h] for h in hosts])
    n = int(rng.integers(0, 9))
    for k in range(1, n + 1):
        host = hosts[int(rng.choice(len(hosts), p=weights / weights.sum()))]
        candidates = np.flatnonzero(labels == ORGAN_LABELS[host])
        iz, iy, ix = np.unravel_index(int(rng.choice(candidates)), grid.shape)
        jitter = rng.uniform(-0.5, 0.5, size=3) * np.array(grid.spacing_mm)
        center = (
            float(grid.s_mm[iz] + jitter[0]),
            float(grid.y_mm[iy] + jitter[1]),
            float(grid.x_mm[ix] + jitter[2]),
        )
        radius = rng.uniform(*LESION_DIAMETER_MM) / 2.0
        f = rng.uniform(0.85, 1.15, size=3)
        semi = (float(radius * f[0]), float(radius * f[1]), float(radius * f[2]))
        value = _lesion_suv(rng, organ_suv[host])
        box, frac = _coverage(grid, center, semi)
        frac = frac * (labels[box] > 0)  # a lesion never reaches into the air
        view = suv[box]
        view[...] = view * (1.0 - frac) + value * frac
        mark = frac >= 0.5
        if not mark.any():
            mark = frac == frac.max()
        lesion_labels[box][mark] = k
        lesion_suv[k] = value
        diameters[k] = 2.0 * float(np.prod(semi)) ** (1.0 / 3.0)
    return lesion_labels, lesion_suv, diameters
