"""The node's door to the model: backend choice and honest provenance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from model.networks import NetworkConfig, UniPETNet
from model.weights_io import save_weights
from service.config import ModelSettings
from service.errors import ConfigError
from service.inference import GaussianDenoiser, UniPETDenoiser, load_denoiser, shipped_weights


def test_auto_without_weights_is_the_gaussian_filter_and_says_so() -> None:
    if shipped_weights() is not None:
        pytest.skip("weights ship with this build: auto picks UniPET")
    denoiser = load_denoiser(ModelSettings(backend="auto", gaussian_fwhm_mm=6.0))
    assert isinstance(denoiser, GaussianDenoiser)
    assert denoiser.algorithm.name == "Gaussian post-filter"
    assert "no neural network" in denoiser.algorithm.description


def test_unipet_without_weights_is_a_config_error(tmp_path: Path) -> None:
    if shipped_weights() is not None:
        pytest.skip("weights ship with this build")
    with pytest.raises(ConfigError, match=r"model\.backend"):
        load_denoiser(ModelSettings(backend="unipet"))


def test_gaussian_keeps_the_regional_mean() -> None:
    rng = np.random.default_rng(0)
    volume = rng.gamma(4.0, 2500.0, size=(20, 32, 32)).astype(np.float32)
    result = GaussianDenoiser(6.0).denoise(volume, (3.0, 4.0, 4.0), 1e-4)
    assert result.volume_bqml.mean() == pytest.approx(volume.mean(), rel=1e-3)
    assert result.volume_bqml.std() < volume.std() / 2


def test_unipet_weights_are_labelled_with_their_file_hash_and_card_version(tmp_path: Path) -> None:
    weights = tmp_path / "unipet-test.safetensors"
    save_weights(UniPETNet(NetworkConfig()), weights, "0.0.1-test")
    (tmp_path / "unipet-test.json").write_text(json.dumps({"version": "0.0.1-test"}))
    denoiser = load_denoiser(
        ModelSettings(backend="unipet", weights=weights, device="cpu", threads=1)
    )
    assert isinstance(denoiser, UniPETDenoiser)
    assert denoiser.algorithm.name == "UniPET"
    assert denoiser.algorithm.version == "0.0.1-test"
    assert denoiser.algorithm.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    volume = np.random.default_rng(1).gamma(4.0, 2500.0, size=(6, 24, 24)).astype(np.float32)
    result = denoiser.denoise(volume, (3.0, 4.0, 4.0), 1e-4)
    # A freshly initialised network is the identity (its residual head starts at zero).
    np.testing.assert_allclose(result.volume_bqml, volume, rtol=1e-5)
    assert result.algorithm is denoiser.algorithm


def test_corrupt_weights_are_a_config_error(tmp_path: Path) -> None:
    weights = tmp_path / "unipet-broken.safetensors"
    weights.write_bytes(b"not safetensors")
    with pytest.raises(ConfigError, match=r"model\.weights"):
        load_denoiser(ModelSettings(backend="unipet", weights=weights, device="cpu"))
