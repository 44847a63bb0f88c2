"""Training losses of UniPET: L1, style consistency, the RALS mask, WGAN-GP.

The region-aware learning strategy (RALS) applies the adversarial loss only where the
full-dose image is "stylized": edges, lesions, hot organs. It finds them by the local
variance of the FULL-DOSE target over a 3x3x3 neighbourhood (the 2.5D stack supplies the
neighbouring slices). In flat regions the best estimate is the smooth mean that L1 already
gives; an adversarial loss there would reward re-creating noise texture, i.e. hallucination.

Threshold: ``RALS_THRESHOLD_SUV2 = 0.05`` SUV^2 (local standard deviation above ~0.22 SUV).
On simulated small-matrix FDG phantoms (5 mm pixels, 6 mm slices) this marks ~17% of the
body voxels: organ and body outlines, lesions, heart and bladder walls; the noise of a
full-dose liver (~0.04 SUV^2 at most) stays below it. It is an absolute SUV^2 value, so it
means the same thing in every patient; change it with the matrix size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.networks.style import StyleEncoder, feature_statistics

__all__ = [
    "RALS_THRESHOLD_SUV2",
    "critic_loss",
    "generator_adversarial_loss",
    "gradient_penalty",
    "l1_loss",
    "lesion_l1_loss",
    "local_variance",
    "rals_mask",
    "style_consistency_loss",
]

RALS_THRESHOLD_SUV2 = 0.05


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, applied to every voxel (the fidelity term)."""
    return F.l1_loss(output, target)


def lesion_l1_loss(
    output: torch.Tensor, target: torch.Tensor, lesion: torch.Tensor
) -> torch.Tensor:
    """Mean absolute error over lesion voxels only (zero when the batch has none).

    Lesions are a fraction of a percent of the voxels, so in the plain L1 mean their error is
    invisible and the cheapest answer is to flatten them; this term weighs them as a whole.
    """
    count = lesion.sum()
    if float(count) == 0.0:
        return output.sum() * 0.0
    return ((output - target).abs() * lesion).sum() / count


def local_variance(volume: torch.Tensor, size: int = 3) -> torch.Tensor:
    """Variance over a ``size``^3 window of a (N, 1, D, H, W) volume, same shape out.

    Computed as E[x^2] - E[x]^2 with replicate padding, so a border voxel of a flat region
    is still flat; clamped at zero against rounding.
    """
    pad = size // 2
    padded = F.pad(volume, (pad,) * 6, mode="replicate")
    mean = F.avg_pool3d(padded, size, stride=1)
    mean_sq = F.avg_pool3d(padded * padded, size, stride=1)
    return (mean_sq - mean * mean).clamp_min(0.0)


def rals_mask(full_dose: torch.Tensor, threshold_suv2: float = RALS_THRESHOLD_SUV2) -> torch.Tensor:
    """1 where the full-dose target is stylized, 0 where it is flat.

    Args:
        full_dose: (N, 1, D, H, W) volume, or a (N, S, H, W) 2.5D stack whose S slices are
            taken as depth; in SUV.
        threshold_suv2: local-variance threshold in SUV^2 (see the module docstring).

    Returns:
        Float mask of the same shape as the 5D volume, or (N, 1, H, W) for the centre slice
        of a stack.
    """
    stack = full_dose.dim() == 4
    volume = full_dose.unsqueeze(1) if stack else full_dose
    mask = (local_variance(volume) > threshold_suv2).to(full_dose.dtype)
    if stack:
        return mask[:, :, full_dose.shape[1] // 2]
    return mask


def style_consistency_loss(
    encoder: StyleEncoder, output_stack: torch.Tensor, target_stack: torch.Tensor
) -> torch.Tensor:
    """L1 between encoder feature statistics (mean, std per channel) of output and target.

    Both stacks are the full-dose stack, the output's with its centre slice replaced by the
    network output, so the only difference the encoder sees is the denoised slice. The
    encoder's own weights are held fixed for this term: if it could move, the cheapest way
    to match statistics would be to make its features constant.
    """
    out_half, out_quarter = _frozen_features(encoder, output_stack)
    with torch.no_grad():
        tgt_half, tgt_quarter = _frozen_features(encoder, target_stack)
    return F.l1_loss(feature_statistics(out_half), feature_statistics(tgt_half)) + F.l1_loss(
        feature_statistics(out_quarter), feature_statistics(tgt_quarter)
    )


def _frozen_features(
    encoder: StyleEncoder, stack: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encoder features at 1/2 and 1/4 resolution with the encoder's weights detached."""

    def frozen(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        params = {name: p.detach() for name, p in module.named_parameters()}
        out: torch.Tensor = torch.func.functional_call(module, params, (x,))
        return out

    half = frozen(encoder.to_half, encoder.encoder_input(stack))
    return half, frozen(encoder.to_quarter, half)


def gradient_penalty(
    critic: torch.nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP term ``weight * E[(||grad critic(x_hat)||_2 - 1)^2]``.

    ``x_hat`` is a random point on the segment between each real and fake sample (one
    mixing factor per sample): enforcing a unit gradient norm there is the soft form of the
    1-Lipschitz constraint the Wasserstein critic needs. ``real`` and ``fake`` are detached.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(shape, generator=generator, dtype=real.dtype).to(real.device)
    mixed = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).requires_grad_(True)
    scores: torch.Tensor = critic(mixed)
    (grads,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    norms: torch.Tensor = grads.flatten(1).norm(2, dim=1)
    penalty: torch.Tensor = weight * (norms - 1.0).pow(2).mean()
    return penalty


def critic_loss(
    critic: torch.nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    mask: torch.Tensor,
    gp_weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Critic's WGAN-GP loss on the stylized voxels only: E[D(fake*m)] - E[D(real*m)] + GP."""
    real_m = (real * mask).detach()
    fake_m = (fake * mask).detach()
    fake_scores: torch.Tensor = critic(fake_m)
    real_scores: torch.Tensor = critic(real_m)
    wasserstein = fake_scores.mean() - real_scores.mean()
    return wasserstein + gradient_penalty(critic, real_m, fake_m, gp_weight, generator)


def generator_adversarial_loss(
    critic: torch.nn.Module, fake: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Generator's adversarial loss on the stylized voxels only: -E[D(fake * mask)]."""
    scores: torch.Tensor = critic(fake * mask)
    return -scores.mean()
