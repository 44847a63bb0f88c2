"""Whole-volume inference: tiling, units, DRF estimate, the public entry point."""

from __future__ import annotations

import itertools
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from model import DenoisedVolume, load_denoiser
from model.cpu_memory import keep_freed_memory
from model.drf_estimate import DrfCalibration
from model.errors import WeightsError
from model.inference import CPU_BATCH_SLICES, blend_ramp, body_window, tile_starts
from model.networks import NetworkConfig, UniPETNet, Variant
from model.patches import slice_stack
from model.weights_io import load_network, save_weights, sha256_file

torch.set_num_threads(1)


CALIBRATION = DrfCalibration(
    coefficients=(2.0, 0.0, 0.0, 0.0, 8.0), n_volumes=2, loo_median_factor_error=1.0
)


def _weights(tmp_path: Path, variant: Variant = Variant.UNIPET, calibrated: bool = True) -> Path:
    """A small network with its zero-initialised layers randomised, written to disk."""
    torch.manual_seed(0)
    net = UniPETNet(NetworkConfig(variant=variant, widths=(8, 16, 16), code_dim=8, style_width=4))
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.startswith("head") or ".affine." in name:
                param.normal_(0.0, 0.1)
    path = tmp_path / f"{variant.value}.safetensors"
    extra = {"drf_calibration": CALIBRATION.to_json()} if calibrated else None
    save_weights(net, path, version="1.2.3", extra=extra)
    return path


def _volume(shape: tuple[int, int, int] = (6, 56, 72)) -> np.ndarray:
    rng = np.random.default_rng(0)
    volume = np.zeros(shape, dtype=np.float32)
    volume[:, 10:-10, 12:-12] = 15000.0
    return volume + rng.gamma(4.0, 1000.0, shape).astype(np.float32)


@pytest.mark.parametrize(("length", "tile", "overlap"), [(10, 16, 4), (50, 16, 4), (64, 32, 8)])
def test_tiles_cover_the_axis_with_the_overlap(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] == max(0, length - tile)
    assert all(b - a <= tile - overlap for a, b in itertools.pairwise(starts))


def test_blend_ramp_is_positive_and_flat_inside() -> None:
    ramp = blend_ramp(10, 3, ramp_start=True, ramp_end=True)
    assert ramp.min() > 0 and (ramp[3:7] == 1).all()
    assert blend_ramp(10, 3, ramp_start=False, ramp_end=False).tolist() == [1.0] * 10


def test_tiled_equals_untiled_within_tolerance(tmp_path: Path) -> None:
    weights = _weights(tmp_path)
    volume = _volume()
    whole = load_denoiser(weights, threads=1, tile_size=256).denoise(volume, 1e-4)
    tiled = load_denoiser(weights, threads=1, tile_size=40, tile_overlap=24).denoise(volume, 1e-4)
    change = np.abs(whole.volume_bqml - volume).mean()
    difference = np.abs(whole.volume_bqml - tiled.volume_bqml)
    assert change > 100.0  # the network does change the image, so the comparison means something
    assert difference.mean() < 0.03 * change
    assert difference.max() < 0.01 * float(volume.max())
    assert whole.drf_estimate == pytest.approx(tiled.drf_estimate)


def test_cpu_inference_in_channels_last_order_gives_the_plain_network_figures(
    tmp_path: Path,
) -> None:
    weights = _weights(tmp_path)
    denoiser = load_denoiser(weights, threads=1, device="cpu", crop_to_body=False)
    assert denoiser.network.head.weight.is_contiguous(memory_format=torch.channels_last)
    volume = _volume((5, 32, 40))
    suv = volume * np.float32(1e-4)
    plain, _ = load_network(weights)  # weights in the default (contiguous) order
    with torch.inference_mode():
        stack = torch.from_numpy(slice_stack(suv, np.arange(5), plain.config.context_slices))
        expected = plain(stack)[:, 0].numpy() / np.float32(1e-4)
    got = denoiser.denoise(volume, 1e-4).volume_bqml
    assert np.abs(expected - volume).mean() > 100.0  # the network changes the image
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=0.5)


def test_batches_of_any_size_give_the_same_volume(tmp_path: Path) -> None:
    weights = _weights(tmp_path)
    volume = _volume((7, 32, 40))
    default = load_denoiser(weights, threads=1, device="cpu")
    assert default.batch_slices == CPU_BATCH_SLICES
    one = load_denoiser(weights, threads=1, device="cpu", batch_slices=1).denoise(volume, 1e-4)
    got = default.denoise(volume, 1e-4)
    assert np.abs(got.volume_bqml - volume).mean() > 100.0  # the network changes the image
    np.testing.assert_allclose(got.volume_bqml, one.volume_bqml, rtol=1e-5, atol=0.05)


def test_the_allocator_keeps_freed_memory_on_glibc() -> None:

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory()


def test_units_follow_the_suv_factor(tmp_path: Path) -> None:
    denoiser = load_denoiser(_weights(tmp_path), threads=1)
    volume = _volume((3, 24, 24))
    first = denoiser.denoise(volume, 1e-4)
    second = denoiser.denoise(volume * 2.0, 0.5e-4)
    np.testing.assert_allclose(second.volume_bqml, 2.0 * first.volume_bqml, rtol=1e-5, atol=1e-2)


def test_result_records_provenance(tmp_path: Path) -> None:
    weights = _weights(tmp_path)
    result = load_denoiser(weights, threads=1, batch_slices=4).denoise(_volume(), 1e-4)
    assert isinstance(result, DenoisedVolume)
    assert result.volume_bqml.shape == (6, 56, 72) and result.volume_bqml.dtype == np.float32
    assert result.weights_sha256 == sha256_file(weights)
    assert result.version == "1.2.3" and result.device == "cpu" and result.seconds > 0
    assert result.drf_estimate is not None and result.drf_estimate > 0


def test_drf_estimate_is_the_calibrated_statistic(tmp_path: Path) -> None:
    volume = _volume()
    result = load_denoiser(_weights(tmp_path, Variant.VANILLA), threads=1).denoise(volume, 1e-4)
    assert result.drf_estimate == pytest.approx(CALIBRATION.estimate(volume, 1e-4))


def test_the_estimate_made_alongside_the_network_is_the_same(tmp_path: Path) -> None:
    """On a GPU the DRF estimate runs in a thread while the network runs; forced on CPU
    here, it must give the same estimate and the same volume as one after the other."""
    weights, volume = _weights(tmp_path), _volume()
    assert not load_denoiser(weights, device="cpu").estimate_alongside  # CPU default
    one_after_other = load_denoiser(weights, threads=1, device="cpu").denoise(volume, 1e-4)
    alongside = load_denoiser(weights, threads=1, device="cpu", estimate_alongside=True)
    result = alongside.denoise(volume, 1e-4)
    assert result.drf_estimate is not None
    assert result.drf_estimate == one_after_other.drf_estimate
    assert np.array_equal(result.volume_bqml, one_after_other.volume_bqml)


def test_no_calibration_gives_no_drf_estimate(tmp_path: Path) -> None:
    denoiser = load_denoiser(_weights(tmp_path, calibrated=False), threads=1)
    assert denoiser.denoise(_volume((2, 16, 16)), 1e-4).drf_estimate is None


@pytest.mark.parametrize(
    ("volume", "factor"),
    [
        (np.zeros((4, 4), np.float32), 1e-4),
        (np.full((2, 4, 4), np.nan, np.float32), 1e-4),
        (np.zeros((2, 4, 4), np.float32), 0.0),
    ],
)
def test_bad_input_is_refused(tmp_path: Path, volume: np.ndarray, factor: float) -> None:
    denoiser = load_denoiser(_weights(tmp_path), threads=1)
    with pytest.raises(ValueError):
        denoiser.denoise(volume, factor)


def test_missing_weights_raise_weights_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError):
        load_denoiser(tmp_path / "absent.safetensors")


def test_unreadable_calibration_raises_weights_error(tmp_path: Path) -> None:
    net = UniPETNet(NetworkConfig(widths=(8, 8, 8), code_dim=4, style_width=4))
    path = tmp_path / "w.safetensors"
    save_weights(net, path, version="0", extra={"drf_calibration": '{"features": ["x"]}'})
    with pytest.raises(WeightsError):
        load_denoiser(path)


def test_body_window_holds_the_body_with_its_margin() -> None:
    suv = np.zeros((4, 120, 140), np.float32)
    suv[:, 40:70, 50:100] = 1.0
    window = body_window(suv, margin_px=8)
    assert window is not None
    rows, cols = window
    assert rows.start <= 40 - 8 + 2 and rows.stop >= 70 + 8 - 2
    assert cols.start <= 50 - 8 + 2 and cols.stop >= 100 + 8 - 2
    assert rows.stop - rows.start < 60 and cols.stop - cols.start < 80
    assert body_window(np.zeros_like(suv)) is None
    assert body_window(np.ones_like(suv)) is None  # all body: nothing to cut


def test_cropped_inference_matches_the_whole_plane_and_keeps_air(tmp_path: Path) -> None:
    weights = _weights(tmp_path)
    rng = np.random.default_rng(1)
    volume = np.zeros((5, 96, 112), np.float32)
    volume[:, 30:62, 40:80] = 15000.0 + rng.gamma(4.0, 1000.0, (5, 32, 40)).astype(np.float32)
    volume[:, :5, :5] = 3.0  # faint air signal far from the body
    cropped = load_denoiser(weights, threads=1).denoise(volume, 1e-4).volume_bqml
    whole = load_denoiser(weights, threads=1, crop_to_body=False).denoise(volume, 1e-4).volume_bqml
    body = (slice(None), slice(30, 62), slice(40, 80))
    change = np.abs(whole[body] - volume[body]).mean()
    assert change > 100.0
    assert np.abs(cropped[body] - whole[body]).mean() < 0.02 * change
    np.testing.assert_array_equal(cropped[:, :5, :5], volume[:, :5, :5])
