"""The node's door to the model: backend choice and honest provenance."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import structlog
import torch

from model.card import ModelCard, TrainedRanges
from model.drf_estimate import WEIGHT_FEATURE_NAMES, DrfCalibration
from model.networks import NetworkConfig, UniPETNet
from model.weights_io import save_weights
from service.config import ModelSettings
from service.errors import ConfigError
from service.pipeline.inference import (
    WEIGHTS_DIR,
    GaussianDenoiser,
    UniPETDenoiser,
    load_denoiser,
    node_version,
    shipped_weights,
    trained_tracers,
)


def _card_text(sha256: str, version: str = "0.0.1-test", **data: object) -> str:
    """A whole model card for other weights: UniPET 1.0.0's (no stated ranges; dataset size
    small) with their hash and version.

    ``data`` replaces fields of the card's training data (e.g. ``trained_ranges``).
    """
    card = ModelCard.from_text((WEIGHTS_DIR / "unipet-1.0.0.json").read_text())
    changed = dataclasses.replace(
        card,
        version=version,
        weights_sha256=sha256,
        data=dataclasses.replace(card.data, **data),  # type: ignore[arg-type]
    )
    return changed.to_text()


def _no_shipped_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build that ships no weights."""
    monkeypatch.setattr("service.pipeline.inference.shipped_weights", lambda: None)


def test_auto_without_weights_is_the_gaussian_filter_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_shipped_weights(monkeypatch)
    denoiser = load_denoiser(ModelSettings(backend="auto", gaussian_fwhm_mm=6.0))
    assert isinstance(denoiser, GaussianDenoiser)
    assert denoiser.algorithm.name == "Gaussian post-filter"
    assert "no neural network" in denoiser.algorithm.description


def test_unipet_without_weights_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_shipped_weights(monkeypatch)
    with pytest.raises(ConfigError, match=r"model\.backend"):
        load_denoiser(ModelSettings(backend="unipet"))


def test_the_default_weights_are_the_newest_version_by_number(tmp_path: Path) -> None:
    for name in ["unipet-1.9.0", "unipet-1.10.0", "unipet-1.2.0", "unipet-candidate"]:
        (tmp_path / f"{name}.safetensors").write_bytes(b"")
    newest = shipped_weights(tmp_path)
    assert newest is not None and newest.name == "unipet-1.10.0.safetensors"
    assert shipped_weights(tmp_path / "missing") is None


def test_auto_runs_the_shipped_unipet_labelled_by_its_model_card() -> None:
    weights = shipped_weights()
    assert weights is not None, "this build must ship UniPET weights in model/weights"
    card = json.loads(weights.with_suffix(".json").read_text())
    denoiser = load_denoiser(ModelSettings(backend="auto"))
    assert isinstance(denoiser, UniPETDenoiser)
    assert denoiser.algorithm.name == "UniPET"
    assert denoiser.algorithm.version == card["version"]
    assert denoiser.algorithm.weights_sha256 == card["weights_sha256"]
    assert card["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert weights.stat().st_size < 20 * 1024 * 1024


def test_gaussian_keeps_the_regional_mean() -> None:
    rng = np.random.default_rng(0)
    volume = rng.gamma(4.0, 2500.0, size=(20, 32, 32)).astype(np.float32)
    result = GaussianDenoiser(6.0).denoise(volume, (3.0, 4.0, 4.0), 1e-4)
    assert result.volume_bqml.mean() == pytest.approx(volume.mean(), rel=1e-3)
    assert result.volume_bqml.std() < volume.std() / 2


def _weights(tmp_path: Path, version: str = "0.0.1-test") -> tuple[Path, str]:
    """Tiny UniPET weights in tmp_path and their SHA-256."""
    weights = tmp_path / "unipet-test.safetensors"
    net = UniPETNet(NetworkConfig(widths=(4, 8, 8), code_dim=4, style_width=4))
    return weights, save_weights(net, weights, version)


def _unipet(weights: Path) -> UniPETDenoiser:
    """The configured UniPET denoiser for ``weights``."""
    denoiser = load_denoiser(
        ModelSettings(backend="unipet", weights=weights, device="cpu", threads=1)
    )
    assert isinstance(denoiser, UniPETDenoiser)
    return denoiser


def test_unipet_weights_are_labelled_with_their_file_hash_and_card_version(tmp_path: Path) -> None:
    weights = tmp_path / "unipet-test.safetensors"
    sha256 = save_weights(UniPETNet(NetworkConfig()), weights, "0.0.1-test")
    (tmp_path / "unipet-test.json").write_text(_card_text(sha256))
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


def test_a_matching_card_gives_the_version(tmp_path: Path) -> None:
    weights, sha256 = _weights(tmp_path)
    weights.with_suffix(".json").write_text(_card_text(sha256, "1.2.3-card"))
    algorithm = _unipet(weights).algorithm
    assert algorithm.version == "1.2.3-card"
    assert algorithm.weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_a_card_of_other_weights_is_a_config_error(tmp_path: Path) -> None:
    weights, sha256 = _weights(tmp_path)
    other = "ab" * 32
    weights.with_suffix(".json").write_text(_card_text(other, "1.0.0"))
    with pytest.raises(ConfigError) as info:
        _unipet(weights)
    message = str(info.value)
    assert other in message
    assert sha256 in message
    assert str(weights) in message


def test_weights_corrupted_after_packaging_are_refused(tmp_path: Path) -> None:
    weights, sha256 = _weights(tmp_path)
    weights.with_suffix(".json").write_text(_card_text(sha256, "1.0.0"))
    # Rewrite the same architecture with other values: still a loadable file, other bytes.
    net = UniPETNet(NetworkConfig(widths=(4, 8, 8), code_dim=4, style_width=4))
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    save_weights(net, weights, "0.0.1-test")
    with pytest.raises(ConfigError, match="corrupted or not the ones the card describes"):
        _unipet(weights)


@pytest.mark.parametrize(
    ("card_text", "reason"),
    [
        ("{not json", "model card is not JSON"),
        ("[1, 2]", "card must be a JSON object"),
        (json.dumps({"version": "1.0.0"}), "card.name must be text"),
    ],
)
def test_a_card_that_cannot_vouch_for_the_weights_is_a_config_error(
    tmp_path: Path, card_text: str, reason: str
) -> None:
    weights, _ = _weights(tmp_path)
    weights.with_suffix(".json").write_text(card_text)
    with pytest.raises(ConfigError, match=reason):
        _unipet(weights)


def test_a_card_without_version_is_a_config_error(tmp_path: Path) -> None:
    weights, sha256 = _weights(tmp_path)
    weights.with_suffix(".json").write_text(_card_text(sha256, version=""))
    with pytest.raises(ConfigError, match="names no version"):
        _unipet(weights)


def test_without_a_card_the_node_version_labels_the_output_with_a_warning(
    tmp_path: Path,
) -> None:
    weights, sha256 = _weights(tmp_path)
    with structlog.testing.capture_logs() as events:
        algorithm = _unipet(weights).algorithm
    assert algorithm.version == node_version()
    assert algorithm.weights_sha256 == sha256
    warnings = [e for e in events if e["event"] == "model_card_missing"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["weights"] == weights.name


def test_the_default_card_states_the_ranges_of_its_clinical_training_data() -> None:
    denoiser = load_denoiser(ModelSettings(backend="auto", device="cpu", threads=1))
    assert denoiser.card is not None and denoiser.algorithm.version == "1.1.0"
    ranges = denoiser.card.ranges
    # UniPET 1.1.0: full dose to DRF 100 on the clinical scanner profiles' voxels.
    assert (ranges.drf, ranges.pixel_mm, ranges.slice_mm) == (
        (1.0, 100.0),
        (1.65, 4.69),
        (1.65, 5.0),
    )
    assert ranges.tracers == frozenset({"fdg"}) == trained_tracers(ModelSettings())
    assert denoiser.card.intended_use.startswith("research")


def test_a_pinned_card_without_stated_ranges_gives_the_ranges_of_its_recipe() -> None:
    pinned = ModelSettings(backend="unipet", weights=WEIGHTS_DIR / "unipet-1.0.0.safetensors")
    denoiser = load_denoiser(pinned.model_copy(update={"device": "cpu", "threads": 1}))
    assert denoiser.card is not None and denoiser.algorithm.version == "1.0.0"
    ranges = denoiser.card.ranges
    # UniPET 1.0.0 states no ranges: DRFs 4 to 100, sizes small (5 / 6 mm) and full (3.6 / 3 mm).
    assert (ranges.drf, ranges.pixel_mm, ranges.slice_mm) == ((4.0, 100.0), (3.6, 5.0), (3.0, 6.0))
    assert ranges.tracers == frozenset({"fdg"}) == trained_tracers(pinned)


def test_stated_ranges_and_tracers_of_a_card_reach_the_node(tmp_path: Path) -> None:
    weights, sha256 = _weights(tmp_path)
    stated = TrainedRanges(drf=(2.0, 150.0), pixel_mm=(2.0, 4.0))
    weights.with_suffix(".json").write_text(
        _card_text(sha256, trained_ranges=stated, tracer="FDG", extra_datasets=())
    )
    card = _unipet(weights).card
    assert card is not None
    # Stated parts win; the slice span still comes from the recipe's size (small: 6 mm).
    assert (card.ranges.drf, card.ranges.pixel_mm, card.ranges.slice_mm) == (
        (2.0, 150.0),
        (2.0, 4.0),
        (6.0, 6.0),
    )
    assert card.ranges.tracers == frozenset({"fdg"})


def test_a_card_with_a_bad_range_is_a_config_error_naming_the_field(tmp_path: Path) -> None:
    weights, sha256 = _weights(tmp_path)
    document = json.loads(_card_text(sha256))
    document["data"]["trained_ranges"] = {"drf": [100.0, 4.0]}
    weights.with_suffix(".json").write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=r"card\.data\.trained_ranges\.drf must be \[low, high\]"):
        _unipet(weights)


def test_the_gaussian_filter_has_no_card_to_check_against() -> None:
    assert GaussianDenoiser(5.0).card is None


def test_the_patient_weight_reaches_a_calibration_that_reads_it(tmp_path: Path) -> None:
    names = WEIGHT_FEATURE_NAMES
    coefficients = tuple(1.0 if name == "log_weight_kg" else 0.0 for name in names)
    calibration = DrfCalibration(coefficients, 2, 1.0, names)  # estimate = the weight in kg
    weights = tmp_path / "unipet-test.safetensors"
    net = UniPETNet(NetworkConfig(widths=(4, 8, 8), code_dim=4, style_width=4))
    sha256 = save_weights(net, weights, "0.0.1-test", {"drf_calibration": calibration.to_json()})
    weights.with_suffix(".json").write_text(_card_text(sha256))
    denoiser = _unipet(weights)
    volume = np.random.default_rng(2).gamma(4.0, 2500.0, size=(6, 24, 24)).astype(np.float32)
    with_weight = denoiser.denoise(volume, (3.0, 4.0, 4.0), 1e-4, 81.5)
    assert with_weight.drf_estimate == pytest.approx(81.5)
    assert denoiser.denoise(volume, (3.0, 4.0, 4.0), 1e-4).drf_estimate is None
