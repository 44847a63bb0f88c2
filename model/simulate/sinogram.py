"""Expected sinograms of one phantom: trues, scatter and randoms, per slice, before counting.

Physics, in the order photons meet it: the activity is blurred by the scanner's resolution
(positron range, non-collinearity, detector size: one 3D Gaussian), projected, attenuated
along each line of response, and detected with a per-bin efficiency (normalisation). Scatter
is the attenuated trues smoothed strongly across bins, angles and slices (single scatter is a
broad, low-frequency distribution), scaled to the scanner's scatter fraction. Randoms are flat
within each slice, scaled to the randoms fraction, and follow the activity along the bed
(singles rates do). All terms are at unit calibration: the count level is set later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage

from model.simulate.filters import gaussian_filter, sigma_voxels
from model.simulate.geometry import SIZES
from model.simulate.projector import SliceProjector, build_projector
from model.simulate.seeding import Purpose, rng_for
from model.simulate.truth import Phantom
from model.simulate.types import ScannerModel

__all__ = ["SinogramModel", "build_sinogram_model", "columns_to_volumes", "support_mask"]

SCATTER_FWHM_MM = 200.0  # radial width of the scatter distribution
SCATTER_ANGLE_SIGMA = 0.06  # fraction of the angular range
SCATTER_AXIAL_FWHM_MM = 80.0
RANDOMS_AXIAL_FWHM_MM = 300.0  # singles come from activity within about a bed length
ROW_EFFICIENCY_SD = 0.04
SLICE_EFFICIENCY_SD = 0.02


@dataclass(frozen=True)
class SinogramModel:
    """Per-slice sinogram terms at unit calibration, shape ``(rows, n_slices)``.

    ``mult`` is efficiency x attenuation (what multiplies ``A x``); ``additive`` is scatter
    plus randoms. Counts are ``Poisson(k * (trues + additive))`` for a calibration ``k``.
    """

    projector: SliceProjector
    mult: torch.Tensor
    trues: torch.Tensor
    additive: torch.Tensor
    scatter: torch.Tensor
    randoms: torch.Tensor


def support_mask(organ_labels: npt.NDArray[np.int16], margin_px: int = 2) -> npt.NDArray[np.bool_]:
    """In-plane pixels that hold activity in any slice, grown by a margin, inside the FOV."""
    n = organ_labels.shape[1]
    body = (organ_labels > 0).any(axis=0)
    body = ndimage.binary_dilation(body, iterations=margin_px)
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2.0
    return np.asarray(body & (yy**2 + xx**2 <= (n / 2.0 - 1.0) ** 2))


def volume_to_columns(
    volume: npt.NDArray[np.float32], support: npt.NDArray[np.bool_]
) -> torch.Tensor:
    """``(z, y, x)`` volume to ``(n_pixels, z)`` columns of the support pixels."""
    return torch.from_numpy(np.ascontiguousarray(volume[:, support].T, dtype=np.float32))


def columns_to_volumes(
    columns: torch.Tensor, support: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float32]:
    """``(n_pixels, n_doses, z)`` columns back to ``(n_doses, z, y, x)`` volumes."""
    _, n_doses, nz = columns.shape
    out = np.zeros((n_doses, nz, *support.shape), dtype=np.float32)
    out[:, :, support] = columns.permute(1, 2, 0).numpy()
    return out


def _scatter(
    trues: torch.Tensor, projector: SliceProjector, pixel_mm: float, slice_mm: float
) -> torch.Tensor:
    """Broad scatter distribution with the shape of smoothed attenuated trues (unit sum)."""
    nz = trues.shape[1]
    full = np.zeros((projector.n_angles, projector.n_bins, nz), dtype=np.float32)
    full[projector.angle_index, projector.bin_index] = trues.numpy()
    sigma = (
        SCATTER_ANGLE_SIGMA * projector.n_angles,
        sigma_voxels(SCATTER_FWHM_MM, (pixel_mm,))[0],
        sigma_voxels(SCATTER_AXIAL_FWHM_MM, (slice_mm,))[0],
    )
    smooth = gaussian_filter(full, sigma, mode="nearest")
    kept = torch.from_numpy(
        np.ascontiguousarray(smooth[projector.angle_index, projector.bin_index])
    )
    return kept / kept.sum().clamp_min(1e-12)


def _randoms(prompts_per_slice: torch.Tensor, n_rows: int, slice_mm: float) -> torch.Tensor:
    """Flat randoms per slice following the smoothed axial activity profile (unit sum)."""
    profile = prompts_per_slice.numpy().astype(np.float64)
    sigma = sigma_voxels(RANDOMS_AXIAL_FWHM_MM, (slice_mm,))
    profile = ndimage.gaussian_filter1d(profile, sigma[0], mode="nearest")
    profile = profile + 0.1 * profile.mean() + 1e-12
    per_slice = torch.from_numpy((profile / profile.sum()).astype(np.float32))
    return per_slice[None, :].expand(n_rows, -1) / n_rows


def build_sinogram_model(
    phantom: Phantom, scanner: ScannerModel, size: str, seed: int
) -> SinogramModel:
    """Expected trues, scatter and randoms of every slice, with the projector that made them."""
    grid = phantom.grid
    dz, dy, _ = grid.spacing_mm
    support = support_mask(phantom.organ_labels)
    n_angles = scanner.n_angles if scanner.n_angles is not None else SIZES[size].n_angles
    projector = build_projector(support, dy, n_angles, scanner.osem_subsets)
    blurred = gaussian_filter(
        phantom.truth_bqml, sigma_voxels(scanner.resolution_fwhm_mm, grid.spacing_mm)
    )
    line_integrals = projector.forward(volume_to_columns(blurred, support))
    attenuation = torch.exp(-projector.forward(volume_to_columns(phantom.mu_per_cm, support)))
    rng = rng_for(seed, Purpose.NORMALISATION)
    row_eff = np.exp(rng.normal(0.0, ROW_EFFICIENCY_SD, projector.n_rows)).astype(np.float32)
    slice_eff = np.exp(rng.normal(0.0, SLICE_EFFICIENCY_SD, grid.shape[0])).astype(np.float32)
    mult = attenuation * torch.from_numpy(row_eff)[:, None] * torch.from_numpy(slice_eff)[None, :]
    trues = mult * line_integrals
    total_trues = float(trues.sum())
    sf, rf = scanner.scatter_fraction, scanner.randoms_fraction
    scatter = _scatter(trues, projector, dy, dz) * (total_trues * sf / (1.0 - sf))
    prompts_per_slice = (trues + scatter).sum(dim=0)
    randoms = _randoms(prompts_per_slice, projector.n_rows, dz)
    randoms = randoms * (float(prompts_per_slice.sum()) * rf / (1.0 - rf))
    return SinogramModel(
        projector=projector,
        mult=mult.contiguous(),
        trues=trues.contiguous(),
        additive=(scatter + randoms).contiguous(),
        scatter=scatter,
        randoms=randoms,
    )
