"""RALS mask, WGAN-GP gradient penalty, masked adversarial and style-consistency losses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model.losses import (
    RALS_THRESHOLD_SUV2,
    critic_loss,
    generator_adversarial_loss,
    gradient_penalty,
    l1_loss,
    local_variance,
    rals_mask,
    style_consistency_loss,
)
from model.networks import StyleEncoder

torch.set_num_threads(1)


class LinearCritic(nn.Module):
    """score = <w, x>: its gradient is w everywhere, so the penalty is known in closed form."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.weight).flatten(1).sum(dim=1)


def test_rals_mask_is_zero_on_flat_volume() -> None:
    flat = torch.full((1, 1, 5, 12, 12), 3.0)
    assert rals_mask(flat).sum() == 0


def test_rals_mask_marks_an_edge_and_only_near_it() -> None:
    volume = torch.zeros(1, 1, 5, 12, 12)
    volume[..., 6:] = 4.0
    mask = rals_mask(volume)[0, 0]
    assert mask[:, :, 5:7].all()
    assert mask[:, :, :4].sum() == 0 and mask[:, :, 8:].sum() == 0


def test_rals_mask_of_a_stack_is_its_centre_slice() -> None:
    stack = torch.zeros(2, 5, 10, 10)
    stack[:, 2, 4, 4] = 10.0
    mask = rals_mask(stack)
    assert mask.shape == (2, 1, 10, 10)
    assert mask[:, 0, 3:6, 3:6].all() and mask.sum() == 2 * 9


def test_rals_threshold_keeps_mild_noise_out() -> None:
    torch.manual_seed(0)
    noise = 2.0 + 0.1 * torch.randn(1, 1, 6, 16, 16)  # variance 0.01 SUV^2
    assert rals_mask(noise, RALS_THRESHOLD_SUV2).sum() == 0


def test_local_variance_of_a_single_hot_voxel() -> None:
    volume = torch.zeros(1, 1, 3, 3, 3)
    volume[0, 0, 1, 1, 1] = 27.0
    assert local_variance(volume)[0, 0, 1, 1, 1].item() == pytest.approx(27.0 * 27.0 / 27 - 1.0)


def test_gradient_penalty_of_linear_critic() -> None:
    weight = torch.full((1, 1, 2, 2), 1.0)  # ||grad|| = 2
    critic = LinearCritic(weight)
    real, fake = torch.rand(4, 1, 2, 2), torch.rand(4, 1, 2, 2)
    penalty = gradient_penalty(critic, real, fake, weight=10.0)
    assert penalty.item() == pytest.approx(10.0 * (2.0 - 1.0) ** 2)


def test_gradient_penalty_is_zero_for_unit_gradient() -> None:
    critic = LinearCritic(torch.tensor([[[[0.6, 0.8]]]]))
    penalty = gradient_penalty(critic, torch.rand(3, 1, 1, 2), torch.rand(3, 1, 1, 2))
    assert penalty.item() == pytest.approx(0.0, abs=1e-10)


def test_adversarial_losses_ignore_unmasked_voxels() -> None:
    critic = LinearCritic(torch.randn(1, 1, 4, 4))
    mask = torch.zeros(2, 1, 4, 4)
    mask[..., :2, :] = 1.0
    real, fake = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    changed = fake.clone()
    changed[..., 2:, :] += 5.0
    generator = torch.Generator().manual_seed(0)
    first = critic_loss(critic, real, fake, mask, generator=generator)
    generator = torch.Generator().manual_seed(0)
    second = critic_loss(critic, real, changed, mask, generator=generator)
    assert first.item() == pytest.approx(second.item())
    assert generator_adversarial_loss(critic, fake, mask).item() == pytest.approx(
        generator_adversarial_loss(critic, changed, mask).item()
    )


def test_style_loss_is_zero_on_target_and_leaves_encoder_untouched() -> None:
    torch.manual_seed(0)
    encoder = StyleEncoder(5, width=4, code_dim=8)
    target = torch.rand(2, 5, 16, 16)
    assert style_consistency_loss(encoder, target, target).item() == 0.0
    output = (target + 0.3 * torch.randn_like(target)).requires_grad_(True)
    loss = style_consistency_loss(encoder, output, target)
    loss.backward()  # type: ignore[no-untyped-call]
    assert loss.item() > 0
    assert output.grad is not None and output.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.parameters())


def test_l1_loss_value() -> None:
    assert l1_loss(torch.zeros(2, 2), torch.full((2, 2), 3.0)).item() == 3.0
