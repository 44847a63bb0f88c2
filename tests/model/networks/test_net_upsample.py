"""The decoder's upsample-and-fuse, computed at the input's resolution, equals the plain one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from model.networks.blocks import UpsampleFuse, conv3x3_of_upsampled


@pytest.mark.parametrize(("n", "channels", "height", "width", "out"), [
    (2, 8, 5, 7, 6), (1, 3, 1, 1, 2), (2, 16, 12, 10, 8),
])  # fmt: skip
def test_convolving_the_upsampled_input_matches_upsampling_first(
    n: int, channels: int, height: int, width: int, out: int
) -> None:
    torch.manual_seed(0)
    x = torch.randn(n, channels, height, width, requires_grad=True)
    weight = torch.randn(out, channels, 3, 3, requires_grad=True)
    reference = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), weight, padding=1)
    got = conv3x3_of_upsampled(x, weight)
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-4)
    upstream = torch.randn_like(reference)
    expected = torch.autograd.grad((reference * upstream).sum(), [x, weight])
    grads = torch.autograd.grad((got * upstream).sum(), [x, weight])
    for mine, theirs in zip(grads, expected, strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_upsample_fuse_equals_upsample_concatenate_convolve(layout: torch.memory_format) -> None:
    torch.manual_seed(1)
    block = UpsampleFuse(16, 8, 8).to(memory_format=layout)  # type: ignore[call-overload]
    x = torch.randn(2, 16, 6, 9).contiguous(memory_format=layout)
    skip = torch.randn(2, 8, 12, 18).contiguous(memory_format=layout)
    up = F.interpolate(x, size=skip.shape[-2:], mode="nearest")
    expected = block.fuse(torch.cat([up, skip], dim=1))
    torch.testing.assert_close(block(x, skip), expected, rtol=1e-5, atol=1e-5)
    # a skip that is not exactly twice the size takes the plain path
    odd_skip = torch.randn(2, 8, 13, 18)
    odd_up = F.interpolate(x, size=odd_skip.shape[-2:], mode="nearest")
    torch.testing.assert_close(block(x, odd_skip), block.fuse(torch.cat([odd_up, odd_skip], dim=1)))
