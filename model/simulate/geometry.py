"""Voxel grids per study size and the solid shapes the phantom is drawn from.

Anatomy is described in millimetres along ``s`` (distance below the vertex), ``y`` (anterior
to posterior) and ``x`` (patient right to left), so one description rasterises onto any grid.
Shapes are evaluated only inside their bounding box: a full-size volume has ~14 M voxels and
evaluating twenty organs over all of them would dominate the simulation time.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["SIZES", "Grid", "SizeSpec", "ellipsoid", "make_grid", "tube"]

Size = Literal["tiny", "small", "full", "clinical"]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
Box = tuple[slice, slice, slice]
Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class SizeSpec:
    """In-plane matrix and voxel size of one study size, plus its sinogram sampling."""

    matrix: int
    pixel_mm: float
    slice_mm: float
    n_angles: int


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(matrix=40, pixel_mm=12.0, slice_mm=20.0, n_angles=48),
    "small": SizeSpec(matrix=96, pixel_mm=5.0, slice_mm=6.0, n_angles=96),
    "full": SizeSpec(matrix=192, pixel_mm=3.6, slice_mm=3.0, n_angles=144),
}


@dataclass(frozen=True)
class Grid:
    """A (z, y, x) voxel grid; z index 0 is the most inferior slice (feet side)."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    s_bottom_mm: float  # ``s`` of the inferior edge of slice 0 (largest ``s``)

    @property
    def s_mm(self) -> FloatArray:
        """Distance below the vertex of each slice centre, decreasing with z index."""
        dz = self.spacing_mm[0]
        return np.asarray(
            self.s_bottom_mm - (np.arange(self.shape[0]) + 0.5) * dz, dtype=np.float64
        )

    @property
    def y_mm(self) -> FloatArray:
        """Row centre positions, 0 at the FOV centre, positive towards posterior."""
        n = self.shape[1]
        return np.asarray((np.arange(n) - (n - 1) / 2.0) * self.spacing_mm[1], dtype=np.float64)

    @property
    def x_mm(self) -> FloatArray:
        """Column centre positions, 0 at the FOV centre, positive towards patient left."""
        n = self.shape[2]
        return np.asarray((np.arange(n) - (n - 1) / 2.0) * self.spacing_mm[2], dtype=np.float64)

    @property
    def voxel_ml(self) -> float:
        """Voxel volume in millilitres."""
        return float(np.prod(self.spacing_mm)) / 1000.0

    def box(self, center: Vec3, half: Vec3) -> Box:
        """Index slices covering a physical box (``s``, ``y``, ``x`` centre and half widths)."""
        s0, y0, x0 = center
        hs, hy, hx = half
        dz, dy, dx = self.spacing_mm
        nz, ny, nx = self.shape
        zc = (self.s_bottom_mm - s0) / dz - 0.5
        yc = y0 / dy + (ny - 1) / 2.0
        xc = x0 / dx + (nx - 1) / 2.0
        return (
            _span(zc, hs / dz, nz),
            _span(yc, hy / dy, ny),
            _span(xc, hx / dx, nx),
        )

    def coords(self, box: Box) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Open (broadcastable) physical coordinates of the voxels inside ``box``."""
        s = self.s_mm[box[0]][:, None, None]
        y = self.y_mm[box[1]][None, :, None]
        x = self.x_mm[box[2]][None, None, :]
        return s, y, x


def _span(center: float, half: float, n: int) -> slice:
    """Index range ``[center - half, center + half]`` clipped to ``[0, n)``."""
    lo = max(0, math.floor(center - half))
    hi = min(n, math.ceil(center + half) + 1)
    return slice(lo, max(lo, hi))


def make_grid(size: str | SizeSpec, s_extent_mm: tuple[float, float]) -> Grid:
    """Grid of a study size (or an explicit spec) covering ``s`` from ``s_extent_mm[0]``
    (top) to ``[1]``."""
    if isinstance(size, str) and size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {sorted(SIZES)}")
    spec = SIZES[size] if isinstance(size, str) else size
    top, bottom = s_extent_mm
    nz = math.ceil((bottom - top) / spec.slice_mm)
    return Grid(
        shape=(nz, spec.matrix, spec.matrix),
        spacing_mm=(spec.slice_mm, spec.pixel_mm, spec.pixel_mm),
        s_bottom_mm=top + nz * spec.slice_mm,
    )


def rotation(angles_deg: Vec3) -> FloatArray:
    """Rotation matrix from three angles (degrees) about the s, y and x axes in turn."""
    a, b, c = (math.radians(v) for v in angles_deg)
    rs = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return np.asarray(rs @ ry @ rx, dtype=np.float64)


def ellipsoid(
    grid: Grid,
    center: Vec3,
    semi: Vec3,
    angles_deg: Vec3 = (0.0, 0.0, 0.0),
    power: float = 2.0,
) -> tuple[Box, BoolArray]:
    """Box and in-box mask of a (rotated, optionally boxy) ellipsoid.

    ``power`` > 2 gives a superellipsoid: flatter sides, as torsos and vertebrae have.
    """
    half = (max(semi),) * 3 if any(angles_deg) else semi
    box = grid.box(center, half)
    s, y, x = grid.coords(box)
    ds, dy, dx = s - center[0], y - center[1], x - center[2]
    if any(angles_deg):
        r = rotation(angles_deg)
        ds, dy, dx = (r[i, 0] * ds + r[i, 1] * dy + r[i, 2] * dx for i in range(3))
    value = (
        np.abs(ds / semi[0]) ** power
        + np.abs(dy / semi[1]) ** power
        + np.abs(dx / semi[2]) ** power
    )
    return box, value <= 1.0


def tube(grid: Grid, points: list[Vec3], radius: float) -> tuple[Box, FloatArray, FloatArray]:
    """Box, distance to the polyline (mm) and arc length (mm) for a tube of ``radius``.

    Callers threshold the distance (shells need two radii in one box) and use the arc
    length to segment the tube, e.g. into vertebrae and discs.
    """
    pts = np.asarray(points, dtype=np.float64)
    lo = pts.min(axis=0) - radius
    hi = pts.max(axis=0) + radius
    box = grid.box(tuple((lo + hi) / 2.0), tuple((hi - lo) / 2.0))
    s, y, x = grid.coords(box)
    shape = np.broadcast_shapes(s.shape, y.shape, x.shape)
    best = np.full(shape, np.inf)
    arc = np.zeros(shape)
    travelled = 0.0
    for a, b in itertools.pairwise(pts):
        seg = b - a
        length = float(np.linalg.norm(seg))
        t = ((s - a[0]) * seg[0] + (y - a[1]) * seg[1] + (x - a[2]) * seg[2]) / length**2
        t = np.clip(t, 0.0, 1.0)
        d2 = (s - a[0] - t * seg[0]) ** 2 + (y - a[1] - t * seg[1]) ** 2
        d2 = d2 + (x - a[2] - t * seg[2]) ** 2
        closer = d2 < best
        best = np.where(closer, d2, best)
        arc = np.where(closer, travelled + t * length, arc)
        travelled += length
    return box, np.sqrt(best), arc
