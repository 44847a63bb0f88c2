"""The card's trained ranges: stated by training, or read from the recipe of an older card."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from model.card import DatasetSummary, ModelCard, TrainedRanges, render_markdown
from model.errors import CardError

SHIPPED = Path(__file__).resolve().parents[3] / "model" / "weights" / "unipet-1.0.0.json"
STATED = TrainedRanges(drf=(2.0, 150.0), pixel_mm=(2.0, 5.0), slice_mm=(1.5, 6.0))


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return ModelCard.from_text(SHIPPED.read_text())


def _with_ranges(card: ModelCard, ranges: TrainedRanges | None) -> ModelCard:
    return dataclasses.replace(card, data=dataclasses.replace(card.data, trained_ranges=ranges))


def test_a_card_without_ranges_writes_none(card: ModelCard) -> None:
    assert card.data.trained_ranges is None
    assert "trained_ranges" not in card.to_json()["data"]  # type: ignore[operator]


def test_stated_ranges_round_trip_after_the_datasets(card: ModelCard) -> None:
    stated = _with_ranges(card, STATED)
    document = json.loads(stated.to_text())
    assert document["data"]["trained_ranges"] == {
        "drf": [2.0, 150.0],
        "pixel_mm": [2.0, 5.0],
        "slice_mm": [1.5, 6.0],
    }
    keys = list(document["data"])
    assert keys.index("extra_datasets") + 1 == keys.index("trained_ranges")
    assert keys.index("trained_ranges") + 1 == keys.index("build_command")
    again = ModelCard.from_text(stated.to_text())
    assert again == stated
    assert again.to_text() == stated.to_text()


def test_a_part_left_out_stays_out_and_comes_from_the_recipe(card: ModelCard) -> None:
    partial = _with_ranges(card, TrainedRanges(drf=(1.0, 200.0)))
    document = json.loads(partial.to_text())
    assert document["data"]["trained_ranges"] == {"drf": [1.0, 200.0]}
    assert ModelCard.from_json(document) == partial
    ranges = partial.data.effective_ranges()
    assert (ranges.drf, ranges.pixel_mm, ranges.slice_mm) == ((1.0, 200.0), (3.6, 5.0), (3.0, 6.0))


def test_effective_ranges_of_the_shipped_card(card: ModelCard) -> None:
    # Training DRFs 4 to 100; sizes small (5 mm pixels, 6 mm slices) and full (3.6 mm, 3 mm).
    assert card.data.effective_ranges() == TrainedRanges(
        drf=(4.0, 100.0), pixel_mm=(3.6, 5.0), slice_mm=(3.0, 6.0)
    )


def test_stated_ranges_win_over_the_recipe(card: ModelCard) -> None:
    assert _with_ranges(card, STATED).data.effective_ranges() == STATED


def test_a_dataset_of_unknown_size_leaves_the_voxel_ranges_unknown(card: ModelCard) -> None:
    extra = (*card.data.extra_datasets, DatasetSummary(size=None, tracer="fdg", train_seeds=None))
    data = dataclasses.replace(card.data, extra_datasets=extra)
    assert data.effective_ranges() == TrainedRanges(drf=(4.0, 100.0))
    tiny = dataclasses.replace(card.data, size="tiny")
    assert tiny.effective_ranges().pixel_mm == (3.6, 12.0)
    assert tiny.effective_ranges().slice_mm == (3.0, 20.0)


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        ({"drf": [100.0, 4.0]}, "card.data.trained_ranges.drf must be [low, high]"),
        ({"pixel_mm": ["3.6", 5.0]}, "card.data.trained_ranges.pixel_mm must be [low, high]"),
        ({"slice_mm": [3.0, True]}, "card.data.trained_ranges.slice_mm must be [low, high]"),
        ({"slice_mm": [3.0]}, "card.data.trained_ranges.slice_mm must be [low, high]"),
        ({"drf": [1.0, 2.0, 3.0]}, "card.data.trained_ranges.drf must be [low, high]"),
        ({"drf": 4.0}, "card.data.trained_ranges.drf must be a list"),
        ({"dose": [1.0, 2.0]}, "card.data.trained_ranges has fields this version does not know"),
        ([1.0, 2.0], "card.data.trained_ranges must be a JSON object"),
    ],
)
def test_a_malformed_range_is_refused_with_its_field(
    card: ModelCard, ranges: object, message: str
) -> None:
    document = json.loads(card.to_text())
    document["data"]["trained_ranges"] = ranges
    with pytest.raises(CardError, match=re.escape(message)):
        ModelCard.from_json(document)


def test_a_range_out_of_order_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="pixel_mm"):
        TrainedRanges(pixel_mm=(5.0, 3.6))


def test_the_markdown_lists_stated_ranges_only(card: ModelCard) -> None:
    page = render_markdown(_with_ranges(card, STATED), "w.safetensors")
    assert "- Trained ranges: DRF 2 to 150; pixel 2 to 5 mm; slice spacing 1.5 to 6 mm" in page
    training_data = page.split("## Training data")[1].split("## Training\n")[0]
    assert "Trained ranges" in training_data
    assert "Trained ranges" not in render_markdown(card, "w.safetensors")
