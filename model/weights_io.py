"""Weights files: safetensors with the architecture in the header, and their SHA-256.

A safetensors file holds only tensors plus a string-to-string header, never code, so
loading weights cannot execute anything (``torch.load`` of a pickle can). The header carries
the :class:`NetworkConfig` and a version string, so the file alone rebuilds the network and
the node can label its output with the exact weights that made it. The critic is never
written: it only exists to train the generator.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from model.errors import WeightsError
from model.networks.unipet import NetworkConfig, UniPETNet

__all__ = ["FORMAT", "load_network", "save_weights", "sha256_file"]

FORMAT = "unipet-weights/1"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(
    net: UniPETNet, path: Path, version: str, extra: Mapping[str, str] | None = None
) -> str:
    """Write the generator's weights (float32, CPU) to ``path``; returns the file's SHA-256.

    ``extra`` adds header entries (e.g. the DRF calibration); it cannot override ``format``,
    ``version`` or ``network_config``.
    """
    tensors = {
        k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()
    }
    metadata = {
        **(extra or {}),
        "format": FORMAT,
        "version": version,
        "network_config": json.dumps(net.config.to_json_dict(), sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)
    return sha256_file(path)


def load_network(
    path: Path, device: torch.device | str = "cpu"
) -> tuple[UniPETNet, dict[str, str]]:
    """Rebuild the network declared in a weights file and load its weights.

    Returns:
        The network in eval mode on ``device``, and the file's header (``version``, ...).

    Raises:
        WeightsError: the file is missing, not a UniPET weights file, or does not match.
    """
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"unreadable weights file {path}: {exc}") from exc
    if metadata.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a {FORMAT} file (format={metadata.get('format')!r})")
    try:
        config = NetworkConfig(**json.loads(metadata["network_config"]))
        net = UniPETNet(config)
        net.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{path} does not match its declared architecture: {exc}") from exc
    return net.to(device).eval(), dict(metadata)
