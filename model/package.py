"""Command line: ship trained weights with their model card.

    python -m model.package --weights RUN/unipet-unipet.safetensors \\
        --evaluation EVAL/results.json [--benchmark BENCH.json] [--drf-accuracy DRF.json] \\
        --version 1.0.0 --out model/weights

Writes ``OUT/unipet-<version>.safetensors`` (a byte-identical copy), ``.json`` (the training
card completed with evaluation and target checks) and ``.md`` (the same for readers).

The version is part of the weights file's header, which the node reads and the hash covers,
so packaging never rewrites it: weights exported with another version are refused rather
than relabelled, and a version already shipped with other bytes is never overwritten. The
training card must name the same SHA-256 as the weights, so a card cannot be paired with
weights it does not describe.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from model.card import ModelCard, package_card, render_markdown
from model.errors import CardError, WeightsError
from model.evaluation.targets import TargetNames
from model.weights_io import load_network, sha256_file

__all__ = ["PackageRequest", "main", "package"]

# Letters, digits, dots, pluses and dashes: safe in a file name and in a DICOM LO value.
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+-]*")


@dataclass(frozen=True)
class PackageRequest:
    """Inputs of one packaging run (the command line's arguments)."""

    weights: Path
    evaluation: Path
    version: str
    out: Path
    benchmark: Path | None = None
    drf_accuracy: Path | None = None
    dataset_dir: Path | None = None
    names: TargetNames = field(default_factory=TargetNames)


def _read_object(path: Path, what: str) -> dict[str, object]:
    """A JSON object from a file.

    Raises:
        WeightsError: the file is missing, not JSON, or not an object.
    """
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise WeightsError(f"cannot read {what} {path}: {exc}") from exc
    if not isinstance(value, dict):
        raise WeightsError(f"{what} {path} is not a JSON object")
    return value


def _training_card(weights: Path) -> ModelCard:
    """The card skeleton training wrote beside ``weights``.

    Raises:
        WeightsError: the card is missing, not JSON, or not a card this version can read.
    """
    path = weights.with_suffix(".json")
    try:
        return ModelCard.from_json(_read_object(path, "training card"))
    except CardError as exc:
        raise WeightsError(f"training card {path}: {exc}") from exc


def _manifest(request: PackageRequest, card: ModelCard) -> dict[str, object] | None:
    """The training dataset's manifest, from ``--dataset-dir`` or the card, if still on disk."""
    recorded = card.data.dataset_dir
    folder = request.dataset_dir or (Path(recorded) if recorded else None)
    if folder is None or not (folder / "manifest.json").is_file():
        return None
    return _read_object(folder / "manifest.json", "dataset manifest")


def _check_source(request: PackageRequest, card: ModelCard) -> str:
    """Refuse weights whose header version or hash differ from what is being shipped.

    Returns:
        The SHA-256 of the source weights.

    Raises:
        WeightsError: unloadable weights, another header version, or a card of other weights.
    """
    _, header = load_network(request.weights)
    if header.get("version") != request.version:
        raise WeightsError(
            f"{request.weights} was exported as version {header.get('version')!r}, not "
            f"{request.version!r}; retrain or re-export with --version {request.version} "
            "(packaging never rewrites weights)"
        )
    sha256 = sha256_file(request.weights)
    if card.weights_sha256 != sha256:
        raise WeightsError(
            f"the training card beside {request.weights} names SHA-256 "
            f"{card.weights_sha256}, but the file's is {sha256}: card and weights "
            "are from different runs"
        )
    return sha256


def _copy_weights(source: Path, target: Path, sha256: str) -> None:
    """Copy ``source`` to ``target`` unless an identical file is there, checking the copy's hash.

    Raises:
        WeightsError: ``target`` holds other bytes, or the copy differs from the source.
    """
    if target.is_file():
        shipped = sha256_file(target)
        if shipped != sha256:
            raise WeightsError(
                f"{target} already ships with SHA-256 {shipped}, not {sha256}; "
                "a version names one file: choose a new version"
            )
        return
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    copied = sha256_file(partial)
    if copied != sha256:
        partial.unlink()
        raise WeightsError(f"copy of {source} has SHA-256 {copied}, expected {sha256}")
    partial.replace(target)


def _optional_object(path: Path | None, what: str) -> dict[str, object] | None:
    """A JSON object from an optional file argument."""
    return None if path is None else _read_object(path, what)


def package(request: PackageRequest) -> tuple[Path, Path, Path]:
    """Copy the weights and write both model cards into ``request.out``.

    Everything is read and checked before anything is written, so a refusal leaves ``out``
    as it was.

    Returns:
        Paths of the shipped weights, JSON card and markdown card.

    Raises:
        WeightsError: bad version string, unusable weights or card, version or hash mismatch.
        ValueError: the evaluation has no usable tables.
    """
    if not VERSION_PATTERN.fullmatch(request.version):
        raise WeightsError(f"version {request.version!r} must match {VERSION_PATTERN.pattern}")
    training_card = _training_card(request.weights)
    sha256 = _check_source(request, training_card)
    try:
        card = package_card(
            training_card,
            request.version,
            sha256,
            _read_object(request.evaluation, "evaluation results"),
            manifest=_manifest(request, training_card),
            benchmark=_optional_object(request.benchmark, "benchmark"),
            drf_accuracy=_optional_object(request.drf_accuracy, "DRF estimate accuracy"),
            names=request.names,
        )
    except CardError as exc:
        raise WeightsError(f"cannot package {request.weights}: {exc}") from exc
    stem = f"unipet-{request.version}"
    request.out.mkdir(parents=True, exist_ok=True)
    weights = request.out / f"{stem}.safetensors"
    # The card names the hash of the shipped copy: _copy_weights refuses any other bytes.
    _copy_weights(request.weights, weights, sha256)
    card_path, markdown_path = request.out / f"{stem}.json", request.out / f"{stem}.md"
    card_path.write_text(card.to_text())
    markdown_path.write_text(render_markdown(card, weights.name))
    return weights, card_path, markdown_path


def _parser() -> argparse.ArgumentParser:
    """Arguments of the packaging command."""
    p = argparse.ArgumentParser(
        prog="python -m model.package",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--weights", type=Path, required=True, help="RUN/unipet-<variant>.safetensors")
    p.add_argument("--evaluation", type=Path, required=True, help="results.json of evaluate")
    p.add_argument("--version", required=True, help="version in the weights header, e.g. 1.0.0")
    p.add_argument("--out", type=Path, required=True, help="folder of shipped weights")
    p.add_argument("--benchmark", type=Path, help="benchmark figures (JSON object)")
    p.add_argument("--drf-accuracy", type=Path, help="DRF estimate accuracy (JSON object)")
    p.add_argument("--dataset-dir", type=Path, help="training dataset, if it has moved")
    p.add_argument("--unipet-name", default="unipet", help="UniPET's method name in the tables")
    p.add_argument("--vanilla-name", default="vanilla", help="vanilla model's method name")
    p.add_argument(
        "--seed-names",
        nargs="*",
        default=[],
        help="method names of the shipped recipe trained with other seeds (seed spread)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Package the weights and print the written paths; returns the exit status."""
    args = _parser().parse_args(argv)
    request = PackageRequest(
        weights=args.weights,
        evaluation=args.evaluation,
        version=args.version,
        out=args.out,
        benchmark=args.benchmark,
        drf_accuracy=args.drf_accuracy,
        dataset_dir=args.dataset_dir,
        names=TargetNames(
            unipet=args.unipet_name,
            vanilla=args.vanilla_name,
            other_seeds=tuple(args.seed_names),
        ),
    )
    try:
        paths = package(request)
    except (WeightsError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
