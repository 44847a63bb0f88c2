"""The shipped model card: the training card completed with evaluation, targets and recipe.

Training writes a card skeleton beside its weights (``model.training.card``); packaging fills
in what only exists later (evaluation tables, target checks, benchmark, DRF estimate accuracy)
and makes it readable away from the machine that trained it: a temporary dataset folder means
nothing to a reader, so it is replaced by the recipe that rebuilds the dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import PurePath

from model.card._json import Reader, finite_object
from model.card.results import DrfAccuracy, Evaluation
from model.card.schema import ModelCard, TrainingData, TrainingRecord
from model.evaluation.targets import TargetNames, check_targets, limits_for_version

__all__ = [
    "EVALUATION_KEYS",
    "OPTIONAL_EVALUATION_KEYS",
    "build_dataset_command",
    "package_card",
    "seed_ranges",
]

# Kept from results.json; its per-case rows are left out (bulky, and in the evaluation folder).
EVALUATION_KEYS = ("size", "test_seeds", "drfs", "training_drfs", "reference", "tables")
# Kept when the evaluation has them (scanner groups, the full-dose-in check: 1.1 on).
OPTIONAL_EVALUATION_KEYS = ("groups", "full_dose_input")
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


def _portable_data(data: TrainingData, manifest: Mapping[str, object] | None) -> TrainingData:
    """The card's ``data`` without the training machine's dataset path, plus its command."""
    command = build_dataset_command(manifest) if manifest is not None else None
    return replace(data, dataset_dir=None, build_command=command)


def _portable_path(value: str, placeholder: str) -> str:
    """``placeholder`` for an absolute path of the training machine, else ``value``."""
    return placeholder if value and PurePath(value).is_absolute() else value


def _portable_training(training: TrainingRecord) -> TrainingRecord:
    """The card's ``training`` with absolute paths in its config replaced by placeholders."""
    config = training.config
    portable = replace(
        config,
        dataset_dir=_portable_path(config.dataset_dir, PATH_PLACEHOLDERS["dataset_dir"]),
        out_dir=_portable_path(config.out_dir, PATH_PLACEHOLDERS["out_dir"]),
        init_weights=_portable_path(config.init_weights, PATH_PLACEHOLDERS["init_weights"]),
        extra_dataset_dirs=tuple(
            _portable_path(d, f"DATASET{i + 2}") for i, d in enumerate(config.extra_dataset_dirs)
        ),
    )
    return replace(training, config=portable)


def package_card(
    training_card: ModelCard,
    version: str,
    weights_sha256: str,
    results: Mapping[str, object],
    *,
    manifest: Mapping[str, object] | None = None,
    benchmark: Mapping[str, object] | None = None,
    drf_accuracy: Mapping[str, object] | None = None,
    names: TargetNames | None = None,
) -> ModelCard:
    """The shipped card: identity, portable recipe, evaluation, target checks and extras.

    Args:
        training_card: the card ``model.train`` wrote beside the weights.
        version: version of the shipped weights (as in their header).
        weights_sha256: SHA-256 of the shipped weights file.
        results: ``results.json`` of ``model.evaluate`` (its per-case rows are left out).
            The targets are those of ``version``'s release (``limits_for_version``).
        manifest: the training dataset's manifest, for the command that rebuilds it.
        benchmark: benchmark figures, copied verbatim.
        drf_accuracy: ``drf_estimate.json`` of ``model.evaluate``; the card keeps the summary.
        names: method names used in the evaluation.

    Raises:
        ValueError: the evaluation has no tables.
        model.errors.CardError: the evaluation or DRF accuracy is malformed (a table key that
            is not a DRF, a missing or mistyped figure).
    """
    tables = results.get("tables")
    if not isinstance(tables, Mapping) or not tables:
        raise ValueError("results.json has no 'tables' object")
    kept = (*EVALUATION_KEYS, *OPTIONAL_EVALUATION_KEYS)
    fields = {k: results[k] for k in kept if k in results}
    if not results.get("training_drfs"):
        fields["training_drfs"] = list(training_card.data.training_drfs)
    evaluation = Evaluation.from_json(Reader(fields, "results"))
    if names is not None and names.other_seeds:
        evaluation = replace(evaluation, seed_methods=(names.unipet, *names.other_seeds))
    accuracy = (
        DrfAccuracy.from_json(Reader(drf_accuracy, "drf_accuracy"), records=True)
        if drf_accuracy is not None
        else training_card.drf_estimate_accuracy
    )
    targets = check_targets(
        evaluation.tables_json(),
        evaluation.training_drfs,
        names,
        limits=limits_for_version(version),
        full_dose=evaluation.full_dose_input,
        drf_overall=accuracy.overall if accuracy is not None else None,
    )
    return replace(
        training_card,
        version=version,
        weights_sha256=weights_sha256,
        data=_portable_data(training_card.data, manifest),
        training=_portable_training(training_card.training),
        evaluation=evaluation,
        targets=tuple(targets),
        benchmark=finite_object(benchmark) if benchmark is not None else training_card.benchmark,
        drf_estimate_accuracy=accuracy,
    )
