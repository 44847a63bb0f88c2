"""The shipped model card: the training card completed with evaluation, targets and recipe.

Training writes a card skeleton beside its weights (``model.train``); packaging fills in what
only exists later (evaluation tables, target checks, benchmark, DRF estimate accuracy) and
makes it readable away from the machine that trained it: a temporary dataset folder means
nothing to a reader, so it is replaced by the recipe that rebuilds the dataset.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import PurePath

from model.evaluation.targets import Tables, TargetNames, check_targets

__all__ = ["EVALUATION_KEYS", "build_dataset_command", "package_card", "seed_ranges"]

# Kept from results.json; its per-case rows are left out (bulky, and in the evaluation folder).
EVALUATION_KEYS = ("size", "test_seeds", "drfs", "training_drfs", "reference", "tables")
# Stand-ins for absolute paths of the training machine, as used in the commands of the card.
PATH_PLACEHOLDERS = {"dataset_dir": "DATASET", "out_dir": "RUN", "init_weights": "START_WEIGHTS"}


def seed_ranges(seeds: Sequence[int]) -> list[str]:
    """Seeds as inclusive ranges, ``[0, 1, 2, 5]`` -> ``["0-2", "5"]`` (order kept per run)."""
    runs: list[list[int]] = []
    for seed in seeds:
        if runs and seed == runs[-1][-1] + 1:
            runs[-1].append(seed)
        else:
            runs.append([seed])
    return [f"{r[0]}-{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs]


def build_dataset_command(manifest: Mapping[str, object]) -> str | None:
    """The ``model.simulate.build_dataset`` command that rebuilds a dataset from its manifest.

    Returns None when the manifest lacks what the command needs.
    """
    splits, drfs = manifest.get("splits"), manifest.get("drfs")
    size, tracer = manifest.get("size"), manifest.get("tracer")
    if not (isinstance(splits, Mapping) and isinstance(drfs, list) and size and tracer):
        return None
    items = [
        f"{name}:{part}"
        for name, seeds in splits.items()
        if isinstance(seeds, list)
        for part in seed_ranges([int(s) for s in seeds])
    ]
    return (
        f"python -m model.simulate.build_dataset --out DATASET --size {size} --tracer {tracer} "
        f"--drfs {' '.join(f'{float(d):g}' for d in drfs)} --split-seeds {','.join(items)}"
    )


def _data_recipe(
    data: Mapping[str, object], manifest: Mapping[str, object] | None
) -> dict[str, object]:
    """The card's ``data`` without the training machine's dataset path, plus its command."""
    keys = ("size", "tracer", "train_seeds", "training_drfs", "extra_datasets")
    recipe = {k: data.get(k) for k in keys if k in data}
    command = build_dataset_command(manifest) if manifest is not None else None
    if command is not None:
        recipe["build_command"] = command
    return recipe


def _portable_training(training: Mapping[str, object]) -> dict[str, object]:
    """The card's ``training`` with absolute paths in its config replaced by placeholders."""
    out = dict(training)
    config = training.get("config")
    if isinstance(config, Mapping):
        portable = dict(config)
        for key, placeholder in PATH_PLACEHOLDERS.items():
            value = portable.get(key)
            if isinstance(value, str) and PurePath(value).is_absolute():
                portable[key] = placeholder
        extra = portable.get("extra_dataset_dirs")
        if isinstance(extra, list | tuple):
            portable["extra_dataset_dirs"] = [
                f"DATASET{i + 2}" if PurePath(str(d)).is_absolute() else d
                for i, d in enumerate(extra)
            ]
        out["config"] = portable
    return out


def _finite(value: object) -> object:
    """Non-finite floats as None, recursively, so the card is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _mapping(card: Mapping[str, object], key: str) -> Mapping[str, object]:
    """A sub-object of the card, empty when absent or not an object."""
    value = card.get(key)
    return value if isinstance(value, Mapping) else {}


def package_card(
    training_card: Mapping[str, object],
    version: str,
    weights_sha256: str,
    results: Mapping[str, object],
    *,
    manifest: Mapping[str, object] | None = None,
    benchmark: Mapping[str, object] | None = None,
    drf_accuracy: Mapping[str, object] | None = None,
    names: TargetNames | None = None,
) -> dict[str, object]:
    """The shipped card: identity, portable recipe, evaluation, target checks and extras.

    Args:
        training_card: the card ``model.train`` wrote beside the weights.
        version: version of the shipped weights (as in their header).
        weights_sha256: SHA-256 of the shipped weights file.
        results: ``results.json`` of ``model.evaluate``.
        manifest: the training dataset's manifest, for the command that rebuilds it.
        benchmark: benchmark figures, copied verbatim.
        drf_accuracy: accuracy of the DRF estimate, copied verbatim.
        names: method names used in the evaluation.

    Raises:
        ValueError: the evaluation has no tables, or a table key is not a DRF.
    """
    tables = results.get("tables")
    if not isinstance(tables, Mapping) or not tables:
        raise ValueError("results.json has no 'tables' object")
    typed_tables: Tables = tables
    training_drfs = results.get("training_drfs") or _mapping(training_card, "data").get(
        "training_drfs"
    )
    drfs = [float(d) for d in training_drfs] if isinstance(training_drfs, list) else []
    card = dict(training_card)
    card.update(
        version=version,
        weights_sha256=weights_sha256,
        data=_data_recipe(_mapping(training_card, "data"), manifest),
        training=_portable_training(_mapping(training_card, "training")),
        evaluation={k: results[k] for k in EVALUATION_KEYS if k in results},
        targets=[c.to_json_dict() for c in check_targets(typed_tables, drfs, names)],
    )
    if benchmark is not None:
        card["benchmark"] = dict(benchmark)
    if drf_accuracy is not None:
        # The per-case records stay in the evaluation folder; the card keeps the summary.
        card["drf_estimate_accuracy"] = {k: v for k, v in drf_accuracy.items() if k != "records"}
    return {key: _finite(value) for key, value in card.items()}
