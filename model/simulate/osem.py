"""Attenuation-weighted OSEM with scatter and randoms as an additive term, batched over doses.

The data model of sinogram row ``i`` of slice ``z`` at count fraction ``p`` (``1/DRF``) is

    E[y] = p * (m[i, z] * (A x)[i, z] + a[i, z])

with ``m`` the calibration x normalisation x attenuation factor and ``a`` scatter plus randoms
at full dose. The EM update ``x <- x / sens * A^T(m * y / E[y])`` has a sensitivity
``sens = A^T m`` that does not depend on ``p`` (it cancels), so one sensitivity image per
subset and slice serves every dose level, and the images of all doses are updated together as
columns of one matrix: the expensive sparse products are shared. Because ``p`` is in the
model, every image comes out in the units of ``x`` (Bq/ml) whatever the DRF: no rescaling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model.simulate.projector import SliceProjector

__all__ = ["osem"]


def _sensitivities(projector: SliceProjector, mult: torch.Tensor) -> list[torch.Tensor]:
    """``A_m^T m`` per subset, shape ``(n_pixels, n_slices)``; zeros replaced by inf."""
    out = []
    b = projector.subset_bounds
    for m in range(projector.n_subsets):
        sens = projector.back(mult[b[m] : b[m + 1]].contiguous(), m)
        out.append(torch.where(sens > 0, sens, torch.full_like(sens, float("inf"))))
    return out


def _initial_image(
    projector: SliceProjector,
    data: torch.Tensor,
    mult: torch.Tensor,
    additive: torch.Tensor,
    fractions: torch.Tensor,
) -> torch.Tensor:
    """Uniform start per slice and dose, at the mean activity the data implies.

    A flat start with the right level saves an iteration over starting from ones; it is kept
    strictly positive so the multiplicative updates can move every pixel.
    """
    net = (data / fractions[None, :, None] - additive[:, None, :]).sum(dim=0)
    sens_total = projector.back(mult).sum(dim=0)
    level = net / sens_total.clamp_min(1e-12)[None, :]
    # Per dose level, so no dose's image depends on which other doses are reconstructed.
    floor = 1e-3 * level.clamp_min(0).mean(dim=1, keepdim=True).clamp_min(1e-6)
    level = torch.maximum(level, floor)
    n_pix = projector.n_pixels
    return level[None].expand(n_pix, *level.shape).contiguous()


def osem(
    projector: SliceProjector,
    data: torch.Tensor,
    mult: torch.Tensor,
    additive: torch.Tensor,
    fractions: Sequence[float],
    iterations: int,
) -> torch.Tensor:
    """Reconstruct every slice at every dose level at once.

    Args:
        projector: slice system matrix with rows grouped into subsets.
        data: counts, shape ``(rows, n_doses, n_slices)``, float32.
        mult: multiplicative factors at full dose, ``(rows, n_slices)``.
        additive: scatter plus randoms at full dose, ``(rows, n_slices)``, strictly positive.
        fractions: count fraction ``p = 1/DRF`` of each dose level (1.0 for full dose).
        iterations: full passes through all subsets.

    Returns:
        Images ``(n_pixels, n_doses, n_slices)``, non-negative, in the units of ``x``.
    """
    rows, n_doses, n_slices = data.shape
    if mult.shape != (rows, n_slices) or additive.shape != (rows, n_slices):
        raise ValueError(
            f"mult {tuple(mult.shape)} / additive {tuple(additive.shape)} "
            f"do not match data {tuple(data.shape)}"
        )
    if len(fractions) != n_doses:
        raise ValueError(f"{len(fractions)} fractions for {n_doses} dose levels")
    if not bool((additive > 0).all()):
        raise ValueError("additive term must be strictly positive (randoms are never zero)")
    p = torch.tensor(list(fractions), dtype=torch.float32)
    sens = _sensitivities(projector, mult)
    x = _initial_image(projector, data, mult, additive, p)
    bounds = projector.subset_bounds
    n_pix = projector.n_pixels
    for _ in range(iterations):
        for m in range(projector.n_subsets):
            lo, hi = bounds[m], bounds[m + 1]
            mult_m = mult[lo:hi, None, :]
            fwd = projector.forward(x.view(n_pix, -1), m).view(hi - lo, n_doses, n_slices)
            expected = (fwd * mult_m + additive[lo:hi, None, :]) * p[None, :, None]
            weight = data[lo:hi] / expected * mult_m
            update = projector.back(weight.view(hi - lo, -1), m).view(n_pix, n_doses, n_slices)
            x *= update / sens[m][:, None, :]
    return x
