"""The training config: typed reading of JSON, the shipped configs, one flag per field."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from model.train import config_from_args, main
from model.training.config import TrainConfig, load_config

CONFIG_DIR = Path(__file__).resolve().parents[3] / "model" / "configs"
CONFIGS = sorted(CONFIG_DIR.glob("*.json"))


def test_json_integers_become_floats_where_a_float_is_due() -> None:
    config = TrainConfig.from_json_dict({"drfs": [4, 10], "lr_generator": 1, "widths": [8, 8, 8]})
    assert config.drfs == (4.0, 10.0) and all(isinstance(d, float) for d in config.drfs)
    assert isinstance(config.lr_generator, float)
    assert config.widths == (8, 8, 8)


def test_the_json_form_reads_back_equal() -> None:
    config = TrainConfig(extra_dataset_dirs=("a", "b"), drfs=(20.0,), seed=9, demodulate=False)
    document = json.loads(json.dumps(config.to_json_dict()))
    assert TrainConfig.from_json_dict(document) == config


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"batch_sise": 4}, "unknown training config fields: ['batch_sise']"),
        ({"batch_size": "4"}, "batch_size must be int"),
        ({"seed": True}, "seed must be int"),
        ({"demodulate": 1}, "demodulate must be bool"),
        ({"drfs": 20}, "drfs must be a list"),
        ({"drfs": [20, "x"]}, "drfs must be float"),
    ],
)
def test_a_bad_field_is_refused_by_name(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        TrainConfig.from_json_dict(values)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads(path: Path) -> None:
    config = load_config(path, {})
    assert config.version == ("1.1.0" if path.stem.endswith("_1.1") else "1.0.0")
    assert config.network().context_slices == config.context_slices


def test_flags_override_the_file_and_none_means_not_given(tmp_path: Path) -> None:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"seed": 5, "batch_size": 2}))
    config = load_config(path, {"batch_size": 3, "seed": None})
    assert (config.seed, config.batch_size) == (5, 3)


def test_help_names_a_flag_for_every_config_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for field in dataclasses.fields(TrainConfig):
        assert f"--{field.name.replace('_', '-')}" in text
    assert "--resume" in text and "--config" in text


def test_boolean_flags_switch_both_ways() -> None:
    on, _ = config_from_args(["--sample-by-volume", "--no-demodulate"])
    assert (on.sample_by_volume, on.demodulate) == (True, False)


def test_batch_scale_keeps_the_recipe_in_samples() -> None:
    shipped = load_config(
        CONFIG_DIR / "unipet_1.1.json", {"early_stop_patience": 8, "early_stop_min_steps": 40_000}
    )
    scaled = shipped.with_batch_scale(8)
    assert scaled.batch_size == 64
    assert (scaled.stage1_steps, scaled.validate_every, scaled.early_stop_min_steps) == (
        10_000,
        125,
        5_000,
    )
    assert scaled.stage1_steps * scaled.batch_size == shipped.stage1_steps * shipped.batch_size
    assert scaled.stage2_steps == 0  # a stage that is off stays off
    assert scaled.early_stop_patience == shipped.early_stop_patience  # counted in validations
    assert scaled.lr_generator == pytest.approx(shipped.lr_generator * 8**0.5)
    assert shipped.with_batch_scale(1) == shipped
    with pytest.raises(ValueError):
        shipped.with_batch_scale(0)


def test_batch_scale_applies_after_the_flags() -> None:
    shipped = str(CONFIG_DIR / "unipet_1.1.json")
    flags = ["--config", shipped, "--stage1-steps", "10000", "--batch-scale", "8"]
    config, _ = config_from_args(flags)
    assert (config.batch_size, config.stage1_steps) == (64, 1250)
