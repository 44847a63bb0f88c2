"""The one door between the DICOM node and the model package (docs/architecture.md).

Everything the node needs from ``model/`` comes through here: a ``Denoiser`` that takes a
(z, y, x) volume in Bq/ml and returns one, with the ``AlgorithmIdentity`` that the writer puts
into the DICOM provenance and the ``ModelCardFacts`` (intended use, trained ranges, tracers)
read from the typed model card (``model.card.ModelCard``); and the PET simulation behind
``unipet-node simulate``. No other module in ``service/`` imports ``model``.

Backends: ``gaussian`` is the classical post-filter, labelled as exactly that (never as
UniPET). ``unipet`` needs trained weights: the package ships UniPET in model/weights (the
newest ``unipet-<version>.safetensors`` with its model card is the default; older versions stay
for sites that pin one), or ``model.weights`` names another file.
``auto`` takes UniPET when weights are configured or shipped and the Gaussian filter otherwise
(a build without the weights folder), and says which in the provenance.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from model import WeightsError
from model import load_denoiser as load_network
from model.baselines import gaussian_postfilter
from model.card import ModelCard
from model.errors import CardError
from model.simulate import simulate_study
from model.weights_io import sha256_file
from service.config import ModelSettings
from service.dicom.card_facts import ModelCardFacts, TrainedRanges
from service.dicom.provenance import AlgorithmIdentity, node_version
from service.errors import ConfigError, InferenceError

if TYPE_CHECKING:
    from model.simulate.types import SimulatedStudy

__all__ = [
    "DenoiseResult",
    "Denoiser",
    "GaussianDenoiser",
    "SimulatedStudy",
    "UniPETDenoiser",
    "card_facts",
    "load_denoiser",
    "node_version",
    "simulate_study",
    "trained_tracers",
]

log = structlog.stdlib.get_logger(__name__)


@dataclass(frozen=True)
class DenoiseResult:
    """A denoised volume and who made it."""

    volume_bqml: npt.NDArray[np.float32]
    algorithm: AlgorithmIdentity
    drf_estimate: float | None
    seconds: float
    device: str


class Denoiser(Protocol):
    """What the worker calls: loaded once per process, then ``denoise`` per series.

    ``card`` holds the model card's facts (intended use, trained ranges) when the weights
    have a card that vouches for them; None for the Gaussian filter and card-less weights.
    """

    algorithm: AlgorithmIdentity
    device: str
    card: ModelCardFacts | None

    def denoise(
        self,
        volume_bqml: npt.NDArray[np.float32],
        spacing_mm: Sequence[float],
        suv_per_bqml: float,
        patient_weight_kg: float | None = None,
    ) -> DenoiseResult:
        """Denoise one (z, y, x) volume in Bq/ml; ``suv_per_bqml`` and the patient weight
        (which the DRF estimate may read) come from its headers."""
        ...


def _check_volume(volume_bqml: npt.NDArray[np.float32]) -> None:
    """Refuse what no denoiser can honestly process: not 3D, or NaN/inf voxels."""
    if volume_bqml.ndim != 3 or not np.isfinite(volume_bqml).all():
        raise InferenceError(f"expected a finite 3D volume, got shape {volume_bqml.shape}")


class GaussianDenoiser:
    """The scanner-style Gaussian post-filter, honestly labelled as such."""

    def __init__(self, fwhm_mm: float) -> None:
        self.fwhm_mm = fwhm_mm
        self.device = "cpu"
        self.card: ModelCardFacts | None = None
        canonical = f"gaussian-postfilter;fwhm_mm={fwhm_mm:.3f}"
        self.algorithm = AlgorithmIdentity(
            name="Gaussian post-filter",
            version=node_version(),
            weights_sha256=hashlib.sha256(canonical.encode()).hexdigest(),
            description=f"3D Gaussian post-filter, FWHM {fwhm_mm:g} mm (no neural network)",
            parameters={"fwhm_mm": f"{fwhm_mm:g}"},
        )

    def denoise(
        self,
        volume_bqml: npt.NDArray[np.float32],
        spacing_mm: Sequence[float],
        suv_per_bqml: float,
        patient_weight_kg: float | None = None,
    ) -> DenoiseResult:
        """Filter the volume; quantitation (regional means) is preserved by construction."""
        start = time.perf_counter()
        _check_volume(volume_bqml)
        filtered = gaussian_postfilter(volume_bqml, spacing_mm, self.fwhm_mm)
        return DenoiseResult(
            volume_bqml=filtered,
            algorithm=self.algorithm,
            drf_estimate=None,
            seconds=time.perf_counter() - start,
            device=self.device,
        )


class UniPETDenoiser:
    """Trained UniPET weights, labelled with the version and hash of the exact file loaded.

    The model card beside the weights (``<stem>.json``, written by ``model.package``) gives
    the version and the trained ranges, but only if its ``weights_sha256`` is the hash of
    the file loaded: a corrupted or swapped weights file must never carry the identity of
    the one the card describes. Without a card the node's own version labels the output,
    with a warning, and nothing is checked against trained ranges.
    """

    def __init__(self, weights: Path, device: str, threads: int | None) -> None:
        try:
            before = sha256_file(weights)
            self._network = load_network(weights, threads=threads, device=device)
        except (OSError, WeightsError) as exc:
            raise ConfigError(f"model.weights: cannot load {weights}: {exc}") from exc
        # The model hashes the file after reading its tensors; the same hash before the read
        # shows the tensors loaded are the bytes that hash names.
        sha256 = self._network.weights_sha256
        if sha256 != before:
            raise ConfigError(f"model.weights: {weights} changed while it was being loaded")
        self.device = device
        card = _vouching_card(weights, sha256)
        self.card = card_facts(card) if card is not None else None
        self.algorithm = AlgorithmIdentity(
            name="UniPET",
            version=card.version if card is not None else node_version(),
            weights_sha256=sha256,
            description="UniPET universal low-dose PET denoiser (style alignment network)",
            parameters={"weights": weights.name},
        )

    def denoise(
        self,
        volume_bqml: npt.NDArray[np.float32],
        spacing_mm: Sequence[float],
        suv_per_bqml: float,
        patient_weight_kg: float | None = None,
    ) -> DenoiseResult:
        """Denoise in SUV inside the network; input and output stay in Bq/ml."""
        _check_volume(volume_bqml)
        try:
            slice_mm, row_mm, column_mm = (float(v) for v in spacing_mm)
            result = self._network.denoise(
                volume_bqml, suv_per_bqml, (slice_mm, row_mm, column_mm), patient_weight_kg
            )
        except (RuntimeError, ValueError) as exc:  # torch raises RuntimeError (e.g. out of memory)
            raise InferenceError(f"UniPET inference failed: {exc}") from exc
        return DenoiseResult(
            volume_bqml=np.asarray(result.volume_bqml, dtype=np.float32),
            algorithm=self.algorithm,
            drf_estimate=result.drf_estimate,
            seconds=result.seconds,
            device=result.device,
        )


#: What a card that names no tracer was trained on (UniPET's simulation default, F-18 FDG).
DEFAULT_TRAINED_TRACER = "fdg"


def _vouching_card(weights: Path, sha256: str) -> ModelCard | None:
    """The model card beside the weights, once it vouches for this file; None without one.

    Raises:
        ConfigError: the card is unreadable, not a model card, names another SHA-256, or
            names no version.
    """
    card_path = weights.with_suffix(".json")
    if not card_path.is_file():
        log.warning(
            "model_card_missing",
            weights=weights.name,
            version=node_version(),
            reason=f"no {card_path.name} beside the weights",
        )
        return None
    card = _read_card(card_path)
    if card.weights_sha256 != sha256:
        raise ConfigError(
            f"model.weights: model card {card_path} names SHA-256 {card.weights_sha256}, "
            f"but {weights} has SHA-256 {sha256}: the weights are corrupted or not the ones "
            "the card describes"
        )
    if not card.version:
        raise ConfigError(f"model.weights: model card {card_path} names no version")
    return card


def _read_card(card_path: Path) -> ModelCard:
    """The typed model card; one reader for every fact the node takes from it.

    Raises:
        ConfigError: the card cannot be read, or is not a model card this version knows
            (the message names the field, e.g. ``card.data.trained_ranges.drf``).
    """
    try:
        return ModelCard.from_text(card_path.read_text())
    except OSError as exc:
        raise ConfigError(f"model.weights: unreadable model card {card_path}: {exc}") from exc
    except CardError as exc:
        raise ConfigError(f"model.weights: invalid model card {card_path}: {exc}") from exc


def _tracers(card: ModelCard) -> frozenset[str]:
    """Canonical names of the card's training tracers; F-18 FDG when it names none."""
    data = card.data
    named = [data.tracer, *(extra.tracer for extra in data.extra_datasets)]
    tracers = {name.strip().lower() for name in named if name and name.strip()}
    return frozenset(tracers or {DEFAULT_TRAINED_TRACER})


def card_facts(card: ModelCard) -> ModelCardFacts:
    """What the node takes from a typed model card: intended use and trained ranges.

    The ranges are the card's effective ones (``TrainingData.effective_ranges``): stated by
    training, or read from the training DRFs and dataset sizes of an older card.
    """
    ranges = card.data.effective_ranges()
    return ModelCardFacts(
        intended_use=card.intended_use,
        ranges=TrainedRanges(
            drf=ranges.drf,
            pixel_mm=ranges.pixel_mm,
            slice_mm=ranges.slice_mm,
            tracers=_tracers(card),
        ),
    )


#: Where the package's trained weights and their model cards ship.
WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "model" / "weights"


def shipped_weights(folder: Path = WEIGHTS_DIR) -> Path | None:
    """The newest ``unipet-<version>.safetensors`` in ``folder``, or None when a build
    leaves it out. Older versions stay beside it so that a site can pin one with
    ``model.weights``; versions compare as numbers, so 1.10.0 is newer than 1.9.0."""
    versions = {
        path: version
        for path in folder.glob("unipet-*.safetensors")
        if (version := _version_of(path)) is not None
    }
    return max(versions, key=versions.__getitem__) if versions else None


def _version_of(weights: Path) -> tuple[int, ...] | None:
    """``(1, 1, 0)`` for ``unipet-1.1.0.safetensors``; None for a name with no version."""
    version = weights.stem.removeprefix("unipet-")
    parts = version.split(".")
    return tuple(int(part) for part in parts) if all(p.isdigit() for p in parts) else None


def trained_tracers(settings: ModelSettings) -> frozenset[str]:
    """Tracers the model card of the configured weights lists in its training data.

    The card's ``data.tracer`` and each ``data.extra_datasets[].tracer`` (canonical lower-case
    names such as "fdg"); F-18 FDG when there are no weights, no card, or it names none.
    """
    weights = settings.weights or shipped_weights()
    card_path = weights.with_suffix(".json") if weights is not None else None
    if card_path is None or not card_path.is_file():
        return frozenset({DEFAULT_TRAINED_TRACER})
    return _tracers(_read_card(card_path))


def load_denoiser(settings: ModelSettings) -> Denoiser:
    """Build the configured denoiser once per process.

    ``auto`` takes UniPET when weights are configured or shipped, else the Gaussian filter
    (and says so in the provenance). ``unipet`` without weights is a configuration error.

    Raises:
        ConfigError: UniPET was asked for but no usable weights are available.
    """
    if settings.backend == "gaussian":
        return GaussianDenoiser(settings.gaussian_fwhm_mm)
    weights = settings.weights or shipped_weights()
    if weights is None:
        if settings.backend == "unipet":
            raise ConfigError(
                "model.backend: 'unipet' needs trained weights, and none are configured "
                "(model.weights) or shipped in model/weights; use 'auto' or 'gaussian'"
            )
        log.info("denoiser_backend", backend="gaussian", reason="no trained UniPET weights")
        return GaussianDenoiser(settings.gaussian_fwhm_mm)
    log.info("denoiser_backend", backend="unipet", weights=weights.name)
    return UniPETDenoiser(weights, settings.device, settings.threads)
