"""The typed model card: the shipped card reads, writes back byte for byte, renders its page."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path

import pytest

from model.card import MethodMeans, ModelCard, render_markdown
from model.errors import CardError
from model.evaluation.full_dose import FullDoseInput, FullDoseRow

WEIGHTS = Path(__file__).resolve().parents[3] / "model" / "weights"
SHIPPED = WEIGHTS / "unipet-1.0.0.json"


@pytest.fixture(scope="module")
def text() -> str:
    """The shipped card's bytes, as the node reads them."""
    return SHIPPED.read_text()


@pytest.fixture(scope="module")
def card(text: str) -> ModelCard:
    return ModelCard.from_text(text)


def test_the_shipped_card_reads_and_writes_back_unchanged(card: ModelCard, text: str) -> None:
    assert card.to_json() == json.loads(text)
    assert card.to_text() == text


def test_the_shipped_card_is_typed(card: ModelCard) -> None:
    assert card.version == "1.0.0"
    assert card.architecture.network.widths == (16, 32, 64)
    assert card.training.config.lesion_loss_weight == 0.03
    assert card.drf_calibration is not None and card.drf_calibration.n_volumes == 290
    assert card.evaluation is not None
    assert [row.method for row in card.evaluation.tables["4"]][:2] == ["low_dose", "gaussian"]
    assert card.targets is not None and not card.targets[0].passed
    assert card.drf_estimate_accuracy is not None
    assert card.drf_estimate_accuracy.overall.n == 54


def test_the_markdown_of_the_shipped_card_is_the_shipped_page(card: ModelCard) -> None:
    shipped = (WEIGHTS / "unipet-1.0.0.md").read_text()
    assert render_markdown(card, "unipet-1.0.0.safetensors") == shipped


def test_a_training_skeleton_round_trips(card: ModelCard) -> None:
    skeleton = dataclasses.replace(
        card, evaluation=None, targets=None, benchmark=None, drf_estimate_accuracy=None
    )
    document = skeleton.to_json()
    assert document["evaluation"] is None
    assert "targets" not in document and "benchmark" not in document
    assert ModelCard.from_json(document) == skeleton
    assert "Not evaluated" in render_markdown(skeleton, "w.safetensors")


def test_non_finite_figures_are_written_as_null(card: ModelCard) -> None:
    assert card.evaluation is not None
    row = card.evaluation.tables["4"][0]
    exact = MethodMeans(row.method, row.n_phantoms, row.seconds, {"psnr_db": math.inf})
    tables = {**card.evaluation.tables, "4": (exact,)}
    changed = dataclasses.replace(
        card, evaluation=dataclasses.replace(card.evaluation, tables=tables)
    )
    document = json.loads(changed.to_text())
    assert document["evaluation"]["tables"]["4"][0]["means"] == {"psnr_db": None}
    evaluation = ModelCard.from_json(document).evaluation
    assert evaluation is not None and evaluation.tables["4"][0].means == {"psnr_db": None}


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("weights_sha256",), 42, "card.weights_sha256 must be text"),
        (("training", "config", "batch_size"), "8", "batch_size must be int"),
        (("architecture", "style_pooling"), "everywhere", "architecture"),
        (("data", "train_seeds"), [1, "2"], "card.data.train_seeds must be a list of integers"),
        (("evaluation", "tables", "4", 0, "n_phantoms"), 6.5, "n_phantoms must be an integer"),
        (("targets", 0, "passed"), "yes", "passed must be true or false"),
        (("comment",), "hand edit", "does not know: ['comment']"),
        (("training", "iterations", "stage3"), 1, "does not know: ['stage3']"),
    ],
)
def test_a_malformed_card_is_refused_with_the_field(
    text: str, path: tuple[str | int, ...], value: object, message: str
) -> None:
    document = json.loads(text)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    with pytest.raises(CardError, match=re.escape(message)):
        ModelCard.from_json(document)


def test_a_table_key_that_is_no_drf_is_refused(text: str) -> None:
    document = json.loads(text)
    document["evaluation"]["tables"]["four"] = document["evaluation"]["tables"].pop("4")
    with pytest.raises(CardError, match="'four' is not a DRF"):
        ModelCard.from_json(document)


def test_text_that_is_not_json_is_refused() -> None:
    with pytest.raises(CardError, match="not JSON"):
        ModelCard.from_text("{")


def _lesion_first(card: ModelCard) -> ModelCard:
    """The shipped card with the 1.1 parts: lesion figures, scanner groups, full-dose check."""
    assert card.evaluation is not None
    rows = card.evaluation.tables["4"]
    lesion_row = MethodMeans(
        "unipet",
        6,
        1.0,
        {"psnr_db": 40.0, "lesion_peak_bias_nf_pct": -2.5, "cr_10_13": 0.7, "bv_10_13": None},
    )
    tables = {**card.evaluation.tables, "4": (*rows, lesion_row)}
    check = FullDoseInput(4, None, (FullDoseRow("unipet", 4, -1.25, 0.93),))
    evaluation = dataclasses.replace(
        card.evaluation,
        tables=tables,
        groups={"unseen scanners": {"4": (lesion_row,)}},
        full_dose_input=check,
    )
    return dataclasses.replace(card, evaluation=evaluation)


def test_lesion_first_parts_round_trip_and_render(card: ModelCard) -> None:
    changed = _lesion_first(card)
    document = json.loads(changed.to_text())
    assert document["evaluation"]["full_dose_input"]["methods"][0]["liver_cov_ratio"] == 0.93
    assert ModelCard.from_json(document) == changed
    page = render_markdown(changed, "w.safetensors")
    assert "### Lesions at DRF 4" in page
    assert "| unipet | -2.5 | n/a |" in page
    assert "| unseen scanners | unipet | 40.00 |" in page
    assert "| unipet | -1.25 | 0.93 |" in page


def test_the_shipped_card_has_none_of_the_lesion_first_parts(card: ModelCard) -> None:
    assert card.evaluation is not None
    assert card.evaluation.groups is None and card.evaluation.full_dose_input is None
    assert "groups" not in card.evaluation.to_json()


def test_a_malformed_full_dose_check_is_refused(card: ModelCard) -> None:
    document = json.loads(_lesion_first(card).to_text())
    document["evaluation"]["full_dose_input"]["methods"][0]["n_phantoms"] = "four"
    with pytest.raises(CardError, match="n_phantoms must be an integer"):
        ModelCard.from_json(document)
