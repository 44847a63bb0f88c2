"""Stacked-2D PET projector: one sparse system matrix for a slice, applied to all slices.

Every transaxial slice has the same geometry, so the matrix of one slice (rows = sinogram
bins, columns = image pixels) serves the whole volume and every dose level at once: images
are the columns of one dense matrix, and a projection is a single sparse-times-dense product
(``torch.sparse.mm`` on CSR, multi-threaded). The matrix only covers pixels inside a support
(the patient outline plus a margin): outside it the truth is zero, and dropping those pixels
and the bins that miss them cuts the work by ~5x at full size. The transpose is stored as its
own CSR matrix because a transposed product on CSR is several times slower.

Pixel footprints are distance driven: a pixel projects onto a rectangle of width
``dx * max(|cos|, |sin|)`` whose area equals the pixel area, split over the (at most two)
bins it overlaps. Entries are path lengths in cm, so ``A @ mu`` is the attenuation line
integral.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from scipy import sparse

__all__ = ["SliceProjector", "build_projector"]

BoolImage = npt.NDArray[np.bool_]


def _csr(matrix: sparse.csr_matrix) -> torch.Tensor:
    """Torch CSR tensor from a SciPy CSR matrix (float32 values, int64 indices)."""
    with warnings.catch_warnings():
        # Torch flags CSR support as beta on construction; products are tested here.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            size=matrix.shape,
            check_invariants=False,
        )


@dataclass(frozen=True)
class SliceProjector:
    """System matrix of one slice, rows grouped by OSEM subset.

    Attributes:
        n_angles: projection angles over 180 degrees.
        n_bins: radial bins per angle (bin width = pixel width).
        support: (ny, nx) pixels that the matrix covers; others are fixed at zero.
        angle_index, bin_index: sinogram position of each kept row.
        subset_bounds: row ``subset_bounds[m]:subset_bounds[m + 1]`` is subset ``m``.
    """

    n_angles: int
    n_bins: int
    support: BoolImage
    angle_index: npt.NDArray[np.int64]
    bin_index: npt.NDArray[np.int64]
    subset_bounds: tuple[int, ...]
    matrices: tuple[torch.Tensor, ...]
    transposes: tuple[torch.Tensor, ...]

    @property
    def n_rows(self) -> int:
        """Kept sinogram rows (bins whose ray crosses the support)."""
        return int(self.angle_index.size)

    @property
    def n_pixels(self) -> int:
        """Pixels inside the support."""
        return int(np.count_nonzero(self.support))

    @property
    def n_subsets(self) -> int:
        """Number of OSEM subsets the rows are grouped into."""
        return len(self.matrices)

    def forward(self, image: torch.Tensor, subset: int | None = None) -> torch.Tensor:
        """Project ``(n_pixels, n_columns)`` images to ``(rows, n_columns)`` sinograms."""
        if subset is not None:
            out: torch.Tensor = torch.sparse.mm(self.matrices[subset], image)
            return out
        return torch.cat([torch.sparse.mm(a, image) for a in self.matrices], dim=0)

    def back(self, sinogram: torch.Tensor, subset: int | None = None) -> torch.Tensor:
        """Adjoint of :meth:`forward`: ``(rows, n_columns)`` to ``(n_pixels, n_columns)``."""
        if subset is not None:
            single: torch.Tensor = torch.sparse.mm(self.transposes[subset], sinogram)
            return single
        b = self.subset_bounds
        out: torch.Tensor = torch.sparse.mm(self.transposes[0], sinogram[b[0] : b[1]])
        for m in range(1, self.n_subsets):
            out += torch.sparse.mm(self.transposes[m], sinogram[b[m] : b[m + 1]])
        return out


def _footprints(
    ys: npt.NDArray[np.float64], xs: npt.NDArray[np.float64], theta: float, n_bins: int, dx: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """(pixel, bin, length_cm) triplets of every pixel at one angle."""
    c, s = math.cos(theta), math.sin(theta)
    t = xs * c + ys * s
    width = dx * max(abs(c), abs(s))
    lo = (t - width / 2.0) / dx + n_bins / 2.0  # left edge in bin units
    first = np.floor(lo).astype(np.int64)
    pixels, bins, values = [], [], []
    for k in (0, 1):
        b = first + k
        left = np.maximum(lo, b)
        right = np.minimum(lo + width / dx, b + 1)
        overlap = np.clip(right - left, 0.0, None) * dx  # mm
        keep = (overlap > 1e-9) & (b >= 0) & (b < n_bins)
        pixels.append(np.flatnonzero(keep))
        bins.append(b[keep])
        values.append(overlap[keep] * dx / width / 10.0)  # area-preserving, in cm
    return np.concatenate(pixels), np.concatenate(bins), np.concatenate(values)


def build_projector(
    support: BoolImage, pixel_mm: float, n_angles: int, n_subsets: int
) -> SliceProjector:
    """System matrix for pixels in ``support`` of a square slice, rows grouped by subset.

    Subset ``m`` holds angles ``m, m + S, m + 2S, ...`` (interleaved, the usual OSEM choice).
    """
    n = support.shape[0]
    if support.shape != (n, n):
        raise ValueError(f"support must be square, got {support.shape}")
    if n_angles % n_subsets:
        raise ValueError(f"{n_subsets} subsets do not divide {n_angles} angles")
    iy, ix = np.nonzero(support)
    ys = (iy - (n - 1) / 2.0) * pixel_mm
    xs = (ix - (n - 1) / 2.0) * pixel_mm
    n_bins = n
    rows, cols, vals = [], [], []
    for a in range(n_angles):
        p, b, v = _footprints(ys, xs, math.pi * a / n_angles, n_bins, pixel_mm)
        rows.append(a * n_bins + b)
        cols.append(p)
        vals.append(v)
    full = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_angles * n_bins, ys.size),
        dtype=np.float64,
    )
    kept = np.flatnonzero(np.diff(full.indptr) > 0)
    angle, bin_ = np.divmod(kept, n_bins)
    order = np.lexsort((bin_, angle, angle % n_subsets))
    kept, angle, bin_ = kept[order], angle[order], bin_[order]
    counts = np.bincount(angle % n_subsets, minlength=n_subsets)
    bounds = tuple(int(v) for v in np.concatenate([[0], np.cumsum(counts)]))
    matrices, transposes = [], []
    for m in range(n_subsets):
        block = full[kept[bounds[m] : bounds[m + 1]]].astype(np.float32)
        matrices.append(_csr(block.tocsr()))
        transposes.append(_csr(block.T.tocsr()))
    return SliceProjector(
        n_angles=n_angles,
        n_bins=n_bins,
        support=support.copy(),
        angle_index=angle.astype(np.int64),
        bin_index=bin_.astype(np.int64),
        subset_bounds=bounds,
        matrices=tuple(matrices),
        transposes=tuple(transposes),
    )
