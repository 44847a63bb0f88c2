"""UniPET generator, style encoder, modulated convolution and critic: shapes and values."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.errors import WeightsError
from model.networks import (
    NetworkConfig,
    PatchCritic,
    StyleCodes,
    UniPETNet,
    Variant,
    count_parameters,
    feature_statistics,
)
from model.networks.blocks import ModulatedConv2d
from model.weights_io import load_network, save_weights, sha256_file

torch.set_num_threads(1)


def _perturbed(config: NetworkConfig, seed: int = 0) -> UniPETNet:
    """A network whose zero-initialised layers (head, style affines) are randomised."""
    torch.manual_seed(seed)
    net = UniPETNet(config)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.startswith("head") or ".affine." in name:
                param.normal_(0.0, 0.1)
    return net.eval()


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize("context", [1, 3, 5])
@pytest.mark.parametrize(("height", "width"), [(32, 32), (37, 50), (9, 4)])
def test_output_shape_grid(variant: Variant, context: int, height: int, width: int) -> None:
    net = _perturbed(NetworkConfig(variant=variant, context_slices=context))
    stack = torch.rand(2, context, height, width)
    with torch.no_grad():
        out = net(stack)
    assert out.shape == (2, 1, height, width)
    assert torch.isfinite(out).all()


def test_fresh_network_is_identity_on_centre_slice() -> None:
    net = UniPETNet(NetworkConfig()).eval()
    stack = torch.rand(3, 5, 24, 20) * 10.0
    with torch.no_grad():
        out = net(stack)
    assert torch.equal(out[:, 0], stack[:, 2])


def test_same_seed_same_weights_and_output() -> None:
    stack = torch.rand(2, 5, 32, 32)
    with torch.no_grad():
        first = _perturbed(NetworkConfig(), seed=3)(stack)
        second = _perturbed(NetworkConfig(), seed=3)(stack)
        other = _perturbed(NetworkConfig(), seed=4)(stack)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_modulated_conv_equals_per_sample_weights() -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(4, 6, code_dim=3)
    torch.nn.init.normal_(conv.affine.weight, std=0.5)
    x, code = torch.randn(2, 4, 9, 9), torch.randn(2, 3)
    style = 1.0 + conv.affine(code)
    for b in range(2):
        weight = conv.weight * style[b][None, :, None, None]
        weight = weight / weight.pow(2).sum(dim=(1, 2, 3), keepdim=True).sqrt()
        expected = F.conv2d(x[b : b + 1], weight, conv.bias, padding=1)
        torch.testing.assert_close(conv(x, code)[b : b + 1], expected, rtol=1e-4, atol=1e-5)


def test_style_codes_differ_with_noise_level() -> None:
    net = _perturbed(NetworkConfig())
    clean = torch.ones(1, 5, 32, 32)
    noisy = clean + 0.5 * torch.randn(1, 5, 32, 32)
    with torch.no_grad():
        codes_clean, codes_noisy = net.style_codes(clean), net.style_codes(noisy)
    assert isinstance(codes_clean, StyleCodes) and isinstance(codes_noisy, StyleCodes)
    assert not torch.allclose(codes_clean.flat(), codes_noisy.flat())


def test_vanilla_has_no_style_encoder() -> None:
    net = UniPETNet(NetworkConfig(variant=Variant.VANILLA))
    assert net.style is None
    assert net.style_codes(torch.rand(1, 5, 8, 8)) is None
    assert count_parameters(net) < count_parameters(UniPETNet(NetworkConfig()))


def test_feature_statistics_of_constant_map() -> None:
    stats = feature_statistics(torch.full((2, 3, 4, 4), 2.0))
    torch.testing.assert_close(stats[:, :3], torch.full((2, 3), 2.0))
    assert stats[:, 3:].max() < 1e-2


@pytest.mark.parametrize("bad", [{"context_slices": 4}, {"widths": (8, 16)}])
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        NetworkConfig(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", list(Variant))
def test_safetensors_round_trip(tmp_path: Path, variant: Variant) -> None:
    net = _perturbed(NetworkConfig(variant=variant, widths=(8, 16, 24)))
    path = tmp_path / "w.safetensors"
    digest = save_weights(net, path, version="9.9.9", extra={"note": "x", "version": "no"})
    loaded, header = load_network(path)
    stack = torch.rand(1, 5, 20, 20)
    with torch.no_grad():
        assert torch.equal(net(stack), loaded(stack))
    assert header["version"] == "9.9.9" and header["note"] == "x"
    assert digest == sha256_file(path)
    assert loaded.config == net.config


def test_default_checkpoint_is_small(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(UniPETNet(NetworkConfig()), path, version="0")
    assert path.stat().st_size < 3 * 1024 * 1024


def test_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError):
        load_network(path)


def test_critic_scores_one_value_per_sample() -> None:
    scores = PatchCritic()(torch.rand(3, 1, 32, 32))
    assert scores.shape == (3,)
