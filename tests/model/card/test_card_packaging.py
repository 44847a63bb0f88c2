"""Packaging the shipped card's own training skeleton gives the shipped card, byte for byte."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from model.card import ModelCard, TrainingData, package_card, render_markdown
from model.evaluation.targets import TargetNames

SHIPPED = Path(__file__).resolve().parents[3] / "model" / "weights" / "unipet-1.0.0.json"
# The manifest of the dataset named by the shipped card's build command.
MANIFEST = {
    "size": "small",
    "tracer": "fdg",
    "drfs": [4.0, 10.0, 20.0, 50.0, 100.0],
    "splits": {
        "train": [*range(1000, 1022), *range(1024, 1050)],
        "test": [1022, 1023, *range(1050, 1054)],
    },
}


def _skeleton(card: ModelCard) -> ModelCard:
    """What training left beside the weights: machine paths, no evaluation yet."""
    data: TrainingData = dataclasses.replace(card.data, dataset_dir="/runs/DS", build_command=None)
    config = dataclasses.replace(
        card.training.config,
        dataset_dir="/runs/DS",
        extra_dataset_dirs=("/runs/DSFULL",),
        out_dir="/runs/unipet",
        init_weights="/runs/unipet_small/unipet-unipet.safetensors",
    )
    return dataclasses.replace(
        card,
        data=data,
        training=dataclasses.replace(card.training, config=config),
        evaluation=None,
        targets=None,
        benchmark=None,
        drf_estimate_accuracy=None,
    )


@pytest.fixture(scope="module")
def shipped() -> dict[str, object]:
    document: dict[str, object] = json.loads(SHIPPED.read_text())
    return document


def test_packaging_the_skeleton_gives_the_shipped_card(shipped: dict[str, object]) -> None:
    card = ModelCard.from_json(shipped)
    skeleton = ModelCard.from_json(json.loads(json.dumps(_skeleton(card).to_json())))
    assert skeleton.to_json()["evaluation"] is None
    evaluation, benchmark = shipped["evaluation"], shipped["benchmark"]
    accuracy = shipped["drf_estimate_accuracy"]
    assert isinstance(evaluation, dict) and isinstance(benchmark, dict)
    assert isinstance(accuracy, dict)
    packaged = package_card(
        skeleton,
        card.version,
        card.weights_sha256,
        {**evaluation, "cases": []},
        manifest=MANIFEST,
        benchmark=benchmark,
        drf_accuracy={**accuracy, "records": [{"seed": 1022, "drf": 4.0, "estimate": 5.0}]},
    )
    assert packaged == card
    assert packaged.to_text() == SHIPPED.read_text()


def test_machine_paths_become_placeholders(shipped: dict[str, object]) -> None:
    skeleton = _skeleton(ModelCard.from_json(shipped))
    results = shipped["evaluation"]
    assert isinstance(results, dict)
    packaged = package_card(skeleton, "1.0.0", skeleton.weights_sha256, results)
    config = packaged.training.config
    assert (config.dataset_dir, config.out_dir, config.init_weights) == (
        "DATASET",
        "RUN",
        "START_WEIGHTS",
    )
    assert config.extra_dataset_dirs == ("DATASET2",)
    assert packaged.data.dataset_dir is None
    assert packaged.data.build_command is None
    assert "/runs/" not in packaged.to_text()


def test_a_later_release_is_checked_against_the_lesion_first_targets(
    shipped: dict[str, object],
) -> None:
    card = ModelCard.from_json(shipped)
    evaluation = shipped["evaluation"]
    assert isinstance(evaluation, dict)
    full_dose = {
        "n_phantoms": 2,
        "drf_estimate": 1.2,
        "methods": [{"method": "unipet", "n_phantoms": 2, "hottest_lesion_max_bias_pct": 0.5,
                     "liver_cov_ratio": 0.9}],
    }  # fmt: skip
    accuracy = shipped["drf_estimate_accuracy"]
    assert isinstance(accuracy, dict)
    results = {**evaluation, "full_dose_input": full_dose, "cases": []}
    packaged = package_card(
        _skeleton(card), "1.1.0", card.weights_sha256, results, drf_accuracy=accuracy
    )
    assert packaged.evaluation is not None
    assert packaged.evaluation.full_dose_input is not None
    assert packaged.targets is not None
    checks = {t.check: t.passed for t in packaged.targets}
    assert "|liver CoV ratio - 1| <= 0.15" in checks
    assert checks["full-dose input: DRF estimate <= 1.5 (highest)"] is True
    # The shipped card's own DRF estimate accuracy (median factor error above 1.15).
    assert checks["DRF estimate: median factor error <= 1.15"] is False


def test_a_second_seed_is_carried_into_the_card_and_its_spread_rendered(
    shipped: dict[str, object],
) -> None:
    card = ModelCard.from_json(shipped)
    evaluation = shipped["evaluation"]
    assert isinstance(evaluation, dict)
    tables = evaluation["tables"]
    assert isinstance(tables, dict)
    # The second seed: UniPET's rows 0.25 dB lower at every DRF.
    reseeded = {
        key: [
            *rows,
            *(
                {**row, "method": "unipet_s1",
                 "means": {**row["means"], "psnr_db": row["means"]["psnr_db"] - 0.25}}
                for row in rows
                if row["method"] == "unipet"
            ),
        ]
        for key, rows in tables.items()
    }  # fmt: skip
    results = {**evaluation, "tables": reseeded, "cases": []}
    names = TargetNames(other_seeds=("unipet_s1",))
    packaged = package_card(_skeleton(card), "1.1.0", card.weights_sha256, results, names=names)
    assert packaged.evaluation is not None
    assert packaged.evaluation.seed_methods == ("unipet", "unipet_s1")
    again = ModelCard.from_json(json.loads(packaged.to_text()))
    assert again == packaged
    text = render_markdown(packaged, "unipet-1.1.0.safetensors")
    assert "### Seed-to-seed spread" in text
    assert "Largest PSNR spread below full dose 0.25 dB, mean 0.25 dB." in text
    # Without a second seed the section is absent.
    plain = package_card(_skeleton(card), "1.1.0", card.weights_sha256, {**evaluation})
    assert "Seed-to-seed" not in render_markdown(plain, "unipet-1.1.0.safetensors")
