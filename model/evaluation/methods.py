"""The methods an evaluation compares, each a callable ``(volume_bqml, spacing_mm, suv) -> bqml``.

A method is made for one DRF (``Method.for_drf``) because some need it: the tuned Gaussian is
a scanner's filter set per dose protocol, so it knows the dose as a site would. Networks get
nothing but the volume (UniPET is meant to work without being told the DRF).

Specs on the command line: ``low_dose`` (the input itself, always evaluated), ``gaussian``
(the node's fallback filter, ``GAUSSIAN_FWHM_MM``), ``tuned_gaussian``, ``nlm``, ``bm4d``
(only if its package is installed) and ``NAME=PATH`` for a trained network's safetensors file.

Rows that are no method of the command line: ``full_dose`` and ``noise_free`` (the reference
images scored like outputs, e.g. for their own false hot spots) and
``gaussian_matched_<network>`` (a Gaussian matched to a network's noise,
``model.evaluation.matched``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from model.baselines import (
    bm4d_available,
    bm4d_denoise,
    gaussian_postfilter,
    nlm_denoise,
    tuned_gaussian,
)

__all__ = [
    "FULL_DOSE",
    "GAUSSIAN_FWHM_MM",
    "LOW_DOSE",
    "MATCHED_PREFIX",
    "NOISE_FREE",
    "DenoiseFn",
    "Method",
    "card_train_seeds",
    "card_training_drfs",
    "matched_name",
    "network_method",
    "parse_method",
    "parse_methods",
]

FloatVolume = npt.NDArray[np.float32]
DenoiseFn = Callable[[FloatVolume, tuple[float, float, float], float], FloatVolume]
GAUSSIAN_FWHM_MM = 5.0  # the node's default fallback filter (service config gaussian_fwhm_mm)
LOW_DOSE = "low_dose"
FULL_DOSE = "full_dose"
NOISE_FREE = "noise_free"
MATCHED_PREFIX = "gaussian_matched_"


@dataclass(frozen=True)
class Method:
    """A named method; ``train_seeds`` are phantoms it has seen (never allowed in the test).

    ``network`` methods also get a Gaussian matched to their noise (:func:`matched_name`).
    """

    name: str
    for_drf: Callable[[float], DenoiseFn]
    train_seeds: frozenset[int] = field(default_factory=frozenset)
    network: bool = False
    identity: str = ""  # what makes its rows: weights hash or filter settings (see reuse)

    @property
    def made_by(self) -> str:
        """What produced this method's rows; two runs with the same one give the same rows."""
        return self.identity or self.name


def matched_name(network: str) -> str:
    """Row name of the Gaussian matched to ``network``'s noise."""
    return f"{MATCHED_PREFIX}{network}"


def _identity(
    volume: FloatVolume, spacing_mm: tuple[float, float, float], suv: float
) -> FloatVolume:
    """The low-dose input unchanged (the row every method must beat)."""
    return volume


def _gaussian(
    volume: FloatVolume, spacing_mm: tuple[float, float, float], suv: float
) -> FloatVolume:
    """The node's fallback Gaussian post-filter at its default FWHM."""
    return gaussian_postfilter(volume, spacing_mm, GAUSSIAN_FWHM_MM)


def _tuned_gaussian_for(drf: float) -> DenoiseFn:
    """The Gaussian with the FWHM tuned for ``drf``."""

    def run(volume: FloatVolume, spacing_mm: tuple[float, float, float], suv: float) -> FloatVolume:
        return tuned_gaussian(volume, spacing_mm, drf)

    return run


def network_method(name: str, weights_path: Path) -> Method:
    """Adapter from a trained network's safetensors file to a method.

    The training phantoms of the model card next to the weights (:func:`card_train_seeds`)
    are carried along so the evaluation can refuse a test seed the network saw.

    Raises:
        model.errors.WeightsError: the weights file cannot be loaded.
    """
    from model.inference import load_denoiser

    denoiser = load_denoiser(weights_path, threads=1, device="auto")

    def run(volume: FloatVolume, spacing_mm: tuple[float, float, float], suv: float) -> FloatVolume:
        return denoiser.denoise(volume, suv, spacing_mm).volume_bqml

    return Method(
        name,
        lambda drf: run,
        card_train_seeds(weights_path),
        network=True,
        identity=f"network sha256:{denoiser.weights_sha256}",
    )


def card_train_seeds(weights_path: Path) -> frozenset[int]:
    """Training phantoms listed in the model card beside a weights file (none without a card).

    Both the network and its DRF calibration were fitted on them, so neither may be scored
    on them.
    """
    card_path = weights_path.with_suffix(".json")
    if not card_path.is_file():
        return frozenset()
    card = json.loads(card_path.read_text())
    return frozenset(int(s) for s in (card.get("data", {}).get("train_seeds") or []))


def card_training_drfs(weights_path: Path) -> tuple[float, ...] | None:
    """DRFs the network beside its model card was trained on; None without a card or list."""
    card_path = weights_path.with_suffix(".json")
    if not card_path.is_file():
        return None
    drfs = json.loads(card_path.read_text()).get("data", {}).get("training_drfs")
    return tuple(float(d) for d in drfs) if drfs else None


def parse_method(spec: str) -> Method:
    """A method from its command-line spec (see the module docstring).

    Raises:
        ValueError: unknown name, ``bm4d`` without its package, or a network named like a
            row of its own (``full_dose``, ``gaussian_matched_...``).
    """
    if "=" in spec:
        name, path = spec.split("=", 1)
        if not name or not path:
            raise ValueError(f"network spec must be NAME=PATH, got {spec!r}")
        if name in (LOW_DOSE, FULL_DOSE, NOISE_FREE) or name.startswith(MATCHED_PREFIX):
            raise ValueError(f"{name!r} names a row of its own; choose another network name")
        return network_method(name, Path(path))
    builtin: dict[str, Callable[[float], DenoiseFn]] = {
        LOW_DOSE: lambda drf: _identity,
        "gaussian": lambda drf: _gaussian,
        "tuned_gaussian": _tuned_gaussian_for,
        "nlm": lambda drf: nlm_denoise,
    }
    if spec == "bm4d":
        if not bm4d_available():
            raise ValueError("bm4d is not installed (optional, non-commercial licence)")
        return Method(spec, lambda drf: bm4d_denoise)
    if spec not in builtin:
        raise ValueError(f"unknown method {spec!r}; expected one of {sorted(builtin)} or NAME=PATH")
    settings = {"gaussian": f"gaussian {GAUSSIAN_FWHM_MM:g} mm FWHM"}
    return Method(spec, builtin[spec], identity=settings.get(spec, spec))


def parse_methods(specs: Sequence[str]) -> list[Method]:
    """The low-dose row first, then each requested method once, in the order given.

    Raises:
        ValueError: a spec is invalid or two methods share a name.
    """
    methods = [parse_method(LOW_DOSE)]
    for spec in specs:
        method = parse_method(spec)
        if any(m.name == method.name for m in methods):
            if method.name == LOW_DOSE:
                continue
            raise ValueError(f"method name {method.name!r} given twice")
        methods.append(method)
    return methods
