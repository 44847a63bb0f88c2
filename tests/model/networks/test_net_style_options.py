"""NetworkConfig style options: body pooling, high-pass encoder input, no demodulation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_net_unipet import _perturbed

from model.losses import style_consistency_loss
from model.networks import NetworkConfig, StyleInput, StylePooling, UniPETNet
from model.networks.blocks import ModulatedConv2d
from model.networks.style import box_mean, masked_feature_statistics, relative_highpass
from model.train import config_from_args
from model.weights_io import load_network, save_weights

torch.set_num_threads(1)

OPTIONS: list[dict[str, object]] = [
    {"style_pooling": StylePooling.BODY},
    {"style_input": StyleInput.SUV_HIGHPASS},
    {"demodulate": False},
    {"style_pooling": "body", "style_input": "suv_highpass", "demodulate": False},
]


def _body_in_air(noise: float, air: int, seed: int = 0) -> torch.Tensor:
    """A (1, 5, 48, 48) stack: a 16x16 SUV-2 body with noise, surrounded by ``air`` of zeros."""
    generator = torch.Generator().manual_seed(seed)
    body = 2.0 + noise * torch.randn(1, 5, 16, 16, generator=generator)
    return F.pad(body, (air, air, air, air))


def test_defaults_are_the_original_network() -> None:
    config = NetworkConfig()
    assert config.style_pooling is StylePooling.SLICE
    assert config.style_input is StyleInput.SUV
    assert config.demodulate is True


def test_options_coerce_strings_and_reject_bad_values() -> None:
    config = NetworkConfig(style_pooling="body", style_input="suv_highpass")  # type: ignore[arg-type]
    assert config.style_pooling is StylePooling.BODY
    assert config.style_input is StyleInput.SUV_HIGHPASS
    with pytest.raises(ValueError, match="lungs"):
        NetworkConfig(style_pooling="lungs")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="demodulate"):
        NetworkConfig(demodulate="no")  # type: ignore[arg-type]


@pytest.mark.parametrize("options", OPTIONS)
def test_fresh_network_is_identity_with_every_option(options: dict[str, object]) -> None:
    net = UniPETNet(NetworkConfig(**options)).eval()  # type: ignore[arg-type]
    stack = torch.rand(2, 5, 21, 18) * 5.0
    with torch.no_grad():
        assert torch.equal(net(stack)[:, 0], stack[:, 2])


@pytest.mark.parametrize("options", OPTIONS)
def test_options_survive_the_weights_file(tmp_path: Path, options: dict[str, object]) -> None:
    net = _perturbed(NetworkConfig(widths=(8, 16, 24), **options))  # type: ignore[arg-type]
    path = tmp_path / "w.safetensors"
    save_weights(net, path, version="0")
    loaded, _ = load_network(path)
    stack = torch.rand(1, 5, 20, 20) * 3.0
    with torch.no_grad():
        assert torch.equal(net(stack), loaded(stack))
    assert loaded.config == net.config


def test_body_pooling_ignores_the_amount_of_air() -> None:
    tight, wide = _body_in_air(0.3, air=0), _body_in_air(0.3, air=16)
    shift = {}
    for pooling in StylePooling:
        net = _perturbed(NetworkConfig(style_pooling=pooling))
        with torch.no_grad():
            codes_tight, codes_wide = net.style_codes(tight), net.style_codes(wide)
        assert codes_tight is not None and codes_wide is not None
        shift[pooling] = float((codes_tight.flat() - codes_wide.flat()).abs().mean())
    # What is left with body pooling comes from the body's border (zero padding vs air).
    assert shift[StylePooling.BODY] < 0.35 * shift[StylePooling.SLICE]


def test_masked_statistics_match_plain_ones_on_the_mask() -> None:
    features = torch.randn(2, 3, 6, 6)
    weight = torch.zeros(2, 1, 6, 6)
    weight[:, :, 1:4, 2:6] = 1.0
    inside = features[:, :, 1:4, 2:6]
    expected = torch.cat([inside.mean(dim=(2, 3)), inside.std(dim=(2, 3), correction=0)], dim=1)
    torch.testing.assert_close(
        masked_feature_statistics(features, weight), expected, atol=1e-4, rtol=1e-4
    )


def test_masked_statistics_of_an_empty_mask_fall_back_to_the_slice() -> None:
    features = torch.randn(1, 2, 5, 5)
    stats = masked_feature_statistics(features, torch.zeros(1, 1, 5, 5))
    torch.testing.assert_close(stats[:, :2], features.mean(dim=(2, 3)))


def test_relative_highpass_scales_with_noise_not_uptake() -> None:
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 1, 64, 64, generator=generator)
    low, high = relative_highpass(1.0 + 0.1 * noise), relative_highpass(4.0 + 0.4 * noise)
    torch.testing.assert_close(low, high, atol=1e-5, rtol=1e-4)
    assert relative_highpass(torch.full((1, 1, 8, 8), 3.0)).abs().max() < 1e-6


def test_highpass_style_loss_runs_with_the_doubled_encoder_input() -> None:
    net = _perturbed(NetworkConfig(style_input=StyleInput.SUV_HIGHPASS))
    assert net.style is not None
    stack = torch.rand(2, 5, 16, 16, requires_grad=True)
    loss = style_consistency_loss(net.style, stack, torch.rand(2, 5, 16, 16))
    loss.backward()  # type: ignore[no-untyped-call]
    assert stack.grad is not None and stack.grad.abs().sum() > 0


def test_without_demodulation_a_common_style_scale_reaches_the_output() -> None:
    torch.manual_seed(0)
    x, code = torch.randn(1, 4, 8, 8), torch.ones(1, 3)
    for demodulate, expected_ratio in ((True, 1.0), (False, 2.0)):
        conv = ModulatedConv2d(4, 6, code_dim=3, demodulate=demodulate)
        with torch.no_grad():
            unit = conv(x, code) - conv.bias[None, :, None, None]
            conv.affine.bias.fill_(1.0)  # style 2 on every input channel
            doubled = conv(x, code) - conv.bias[None, :, None, None]
        torch.testing.assert_close(doubled, expected_ratio * unit, rtol=1e-4, atol=1e-5)


def test_train_flags_reach_the_network_config() -> None:
    config, _ = config_from_args(
        ["--style-pooling", "body", "--style-input", "suv_highpass", "--no-demodulate"]
    )
    network = config.network()
    assert network.style_pooling is StylePooling.BODY
    assert network.style_input is StyleInput.SUV_HIGHPASS
    assert network.demodulate is False
    assert config_from_args([])[0].network().demodulate is True


@pytest.mark.parametrize("shape", [(2, 5, 37, 50), (1, 3, 5, 4), (3, 1, 64, 64)])
@pytest.mark.parametrize("size", [3, 7])
def test_box_mean_is_average_pooling_over_the_pixels_inside_the_slice(
    shape: tuple[int, int, int, int], size: int
) -> None:
    torch.manual_seed(1)
    stack = (torch.rand(shape) * 5.0).requires_grad_(True)
    reference = F.avg_pool2d(stack, size, stride=1, padding=size // 2, count_include_pad=False)
    mean = box_mean(stack, size)
    torch.testing.assert_close(mean, reference, rtol=1e-6, atol=1e-6)
    # and the gradients the style encoder trains with
    weights = torch.rand(shape)
    (grad_mean,) = torch.autograd.grad((mean * weights).sum(), stack)
    (grad_reference,) = torch.autograd.grad((reference * weights).sum(), stack)
    torch.testing.assert_close(grad_mean, grad_reference, rtol=1e-5, atol=1e-6)
