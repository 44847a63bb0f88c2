"""Packaging trained weights: byte-identical copy, hash-true card, targets, markdown, refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from model.card import EVALUATION_KEYS
from model.drf_estimate import FEATURE_NAMES
from model.networks import NetworkConfig, UniPETNet
from model.package import main
from model.weights_io import load_network, save_weights, sha256_file

VERSION = "1.0.0"


def _row(method: str, psnr: float, **means: float | None) -> dict[str, object]:
    """A table row as ``model.evaluation.report.write_reports`` writes it."""
    base: dict[str, float | None] = {
        "psnr_db": psnr,
        "nrmse": 0.1,
        "ssim": 0.9,
        "liver_bias_pct": 0.5,
        "liver_cov_ratio": 1.0,
        "lesion_max_bias_pct": -2.0,
        "lesion_mean_bias_pct": -1.0,
        "lesion_mean_bias_truth_pct": -4.0,
        "lesion_crc": 0.8,
    }
    return {"method": method, "n_phantoms": 2, "seconds": 1.5, "means": {**base, **means}}


def _results() -> dict[str, object]:
    """results.json with a training DRF where UniPET meets its targets and an unseen one where
    it misses some, plus the per-case rows packaging must drop."""
    return {
        "size": "tiny",
        "test_seeds": [90, 91],
        "drfs": [4.0, 30.0],
        "reference": "Reference: the full-dose reconstruction.",
        "training_drfs": [4.0, 10.0, 20.0, 50.0, 100.0],
        "tables": {
            "4": [
                _row("gaussian", 36.0, lesion_crc=None),
                _row("vanilla", 37.5),
                _row("drf4", 38.05),
                _row("unipet", 38.0),
            ],
            "30": [
                _row("gaussian", 31.0),
                _row("vanilla", 32.0),
                _row("drf4", 32.0),
                _row("unipet", 33.0, liver_cov_ratio=1.31),
            ],
        },
        "cases": [{"seed": 90, "drf": 4.0, "method": "unipet", "seconds": 1.0, "metrics": {}}],
    }


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A training run folder: tiny weights of VERSION, their card, and the dataset manifest."""
    dataset = tmp_path / "tmpdata" / "ds"
    dataset.mkdir(parents=True)
    manifest = {
        "size": "tiny",
        "tracer": "fdg",
        "drfs": [4.0, 10.0, 20.0, 50.0, 100.0, 30.0],
        "splits": {"train": [0, 1, 2, 5], "validation": [6], "test": [90, 91]},
        "phantoms": [],
    }
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    weights = tmp_path / "run" / "unipet-unipet.safetensors"
    net = UniPETNet(NetworkConfig(widths=(4, 8, 8), code_dim=4, style_width=4))
    sha256 = save_weights(net, weights, VERSION)
    config = {"dataset_dir": str(dataset), "out_dir": str(weights.parent), "seed": 3}
    card = {
        "name": "UniPET (unipet)",
        "version": VERSION,
        "weights_sha256": sha256,
        "architecture": {**net.config.to_json_dict(), "parameters": 1234, "input": "SUV stack"},
        "data": {
            "dataset_dir": str(dataset),
            "size": "tiny",
            "tracer": "fdg",
            "train_seeds": [0, 1, 2, 5],
            "training_drfs": [4.0, 10.0, 20.0, 50.0, 100.0],
        },
        "training": {
            "config": config,
            "seed": 3,
            "iterations": {"stage1": 10, "stage2": 5},
            "steps_done": 15,
            "final_losses": {"l1": 0.1},
            "wall_seconds": 7200.0,
        },
        "hardware": {"device": "cpu", "threads": 1, "cpu": "x86_64", "torch": "2"},
        "evaluation": None,
        "intended_use": "research; not for diagnosis",
        "drf_calibration": {
            "features": list(FEATURE_NAMES),
            "coefficients": [0.1, 0.2, 0.3, 0.4, 0.5],
            "n_volumes": 20,
            "loo_median_factor_error": 1.31,
        },
    }
    weights.with_suffix(".json").write_text(json.dumps(card))
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "results.json").write_text(json.dumps(_results()))
    return tmp_path


def _package(run: Path, *extra: str, version: str = VERSION) -> int:
    """Run the command line on the fixture's run into run/out."""
    return main(
        [
            "--weights",
            str(run / "run" / "unipet-unipet.safetensors"),
            "--evaluation",
            str(run / "eval" / "results.json"),
            "--version",
            version,
            "--out",
            str(run / "out"),
            *extra,
        ]
    )


def test_package_ships_identical_weights_and_a_hash_true_card(run: Path) -> None:
    assert _package(run) == 0
    shipped = run / "out" / "unipet-1.0.0.safetensors"
    source = run / "run" / "unipet-unipet.safetensors"
    assert shipped.read_bytes() == source.read_bytes()
    card = json.loads((run / "out" / "unipet-1.0.0.json").read_text())
    assert card["version"] == VERSION
    assert card["weights_sha256"] == hashlib.sha256(shipped.read_bytes()).hexdigest()
    assert card["weights_sha256"] == sha256_file(shipped)
    _, header = load_network(shipped)
    assert header["version"] == VERSION


def test_card_holds_the_evaluation_tables_without_cases(run: Path) -> None:
    assert _package(run) == 0
    card = json.loads((run / "out" / "unipet-1.0.0.json").read_text())
    assert set(card["evaluation"]) == set(EVALUATION_KEYS)
    assert "cases" not in card["evaluation"]
    assert card["evaluation"]["tables"] == _results()["tables"]
    assert "benchmark" not in card
    assert "drf_estimate_accuracy" not in card


def test_card_targets_pass_and_miss(run: Path) -> None:
    assert _package(run) == 0
    card = json.loads((run / "out" / "unipet-1.0.0.json").read_text())
    results = {(t["check"], t["drf"]): t["passed"] for t in card["targets"]}
    assert results[("PSNR >= drf4 - 0.1 dB", 4.0)] is True
    assert results[("PSNR >= vanilla + 0.3 dB", 30.0)] is True
    assert results[("PSNR > every DRF-specific model (unseen DRF)", 30.0)] is True
    assert results[("|liver CoV ratio - 1| <= 0.2", 4.0)] is True
    assert results[("|liver CoV ratio - 1| <= 0.2", 30.0)] is False
    assert results[("mean PSNR over DRFs >= vanilla + 0.3 dB", None)] is True
    assert ("PSNR >= best of gaussian/nlm + 1 dB", 4.0) in results


def test_card_has_the_dataset_recipe_and_no_machine_paths(run: Path) -> None:
    assert _package(run) == 0
    text = (run / "out" / "unipet-1.0.0.json").read_text()
    card = json.loads(text)
    assert str(run) not in text
    assert "dataset_dir" not in card["data"]
    assert card["data"]["train_seeds"] == [0, 1, 2, 5]
    assert card["data"]["build_command"] == (
        "python -m model.simulate.build_dataset --out DATASET --size tiny --tracer fdg "
        "--drfs 4 10 20 50 100 30 --split-seeds train:0-2,train:5,validation:6,test:90-91"
    )
    assert card["training"]["config"]["dataset_dir"] == "DATASET"
    assert card["training"]["config"]["out_dir"] == "RUN"
    assert card["training"]["config"]["seed"] == 3


def test_markdown_card_has_tables_targets_and_limitations(run: Path) -> None:
    assert _package(run) == 0
    markdown = (run / "out" / "unipet-1.0.0.md").read_text()
    sha256 = sha256_file(run / "out" / "unipet-1.0.0.safetensors")
    assert f"`{sha256}`" in markdown
    assert "### DRF 4 (training DRF), 2 test phantoms" in markdown
    assert "### DRF 30 (unseen DRF), 2 test phantoms" in markdown
    assert "| unipet | 38.00 | 0.9000 | 1.00 | -2.0 | -1.0 | +0.50 |" in markdown
    assert "| 30 | 0.310 | 0.200 | MISS |" in markdown
    assert "| PASS |" in markdown
    assert "train:0-2,train:5" in markdown
    assert "Training seeds: 0-2, 5 (4)" in markdown
    assert "2.00 h" in markdown
    assert "## Limitations" in markdown
    assert "not for diagnosis" in markdown
    assert str(run) not in markdown


def test_benchmark_is_copied_verbatim(run: Path) -> None:
    benchmark = {"shape": [400, 192, 192], "cpu": {"seconds": 41.5, "threads": 2}}
    (run / "bench.json").write_text(json.dumps(benchmark))
    assert _package(run, "--benchmark", str(run / "bench.json")) == 0
    card = json.loads((run / "out" / "unipet-1.0.0.json").read_text())
    assert card["benchmark"] == benchmark
    markdown = (run / "out" / "unipet-1.0.0.md").read_text()
    assert "| `cpu.seconds` | 41.5 |" in markdown


def test_a_version_other_than_the_weights_header_is_refused(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _package(run, version="2.0.0") == 2
    err = capsys.readouterr().err
    assert "'1.0.0', not '2.0.0'" in err
    assert "retrain or re-export" in err
    assert not (run / "out").exists()


def test_a_card_of_other_weights_is_refused(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card_path = run / "run" / "unipet-unipet.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "weights_sha256": "0" * 64}))
    assert _package(run) == 2
    assert "different runs" in capsys.readouterr().err
    assert not (run / "out").exists()


def test_a_shipped_version_is_never_overwritten_with_other_bytes(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = run / "out" / "unipet-1.0.0.safetensors"
    shipped.parent.mkdir()
    shipped.write_bytes(b"other weights")
    assert _package(run) == 2
    assert "choose a new version" in capsys.readouterr().err
    assert shipped.read_bytes() == b"other weights"


def test_packaging_twice_is_idempotent(run: Path) -> None:
    assert _package(run) == 0
    first = (run / "out" / "unipet-1.0.0.json").read_text()
    assert _package(run) == 0
    assert (run / "out" / "unipet-1.0.0.json").read_text() == first


def test_drf_accuracy_summary_goes_into_both_cards_without_its_records(run: Path) -> None:
    accuracy = {
        "band_factor": 1.5,
        "overall": {"n": 4, "median_factor_error": 1.31, "fraction_within_band": 0.75},
        "per_drf": [
            {
                "drf": 4.0,
                "training": True,
                "n": 2,
                "median_estimate": 4.8,
                "median_factor_error": 1.2,
                "fraction_within_band": 1.0,
            },
            {
                "drf": 33.0,
                "training": False,
                "n": 2,
                "median_estimate": 52.0,
                "median_factor_error": 1.58,
                "fraction_within_band": 0.5,
            },
        ],
        "patient_spread": {
            "n": 4,
            "floor_median_factor_error": 1.19,
            "median_factor_error_without_spread": 1.12,
        },
        "records": [{"seed": 90, "drf": 4.0, "estimate": 4.8, "patient_cov_factor": 1.05}],
    }
    path = run / "drf_estimate.json"
    path.write_text(json.dumps(accuracy))
    assert _package(run, "--drf-accuracy", str(path)) == 0
    card = json.loads((run / "out" / "unipet-1.0.0.json").read_text())
    assert "records" not in card["drf_estimate_accuracy"]
    assert card["drf_estimate_accuracy"]["overall"]["median_factor_error"] == 1.31
    assert card["drf_estimate_accuracy"]["patient_spread"]["floor_median_factor_error"] == 1.19
    text = (run / "out" / "unipet-1.0.0.md").read_text()
    assert "| 33 | no | 2 | 52.0 | 1.58 | 50% |" in text
    assert "median factor error 1.31 over 4 test volumes, 75% within a factor 1.5" in text
    assert (
        "error of 1.19 on these 4 cases; this estimate with the drawn spread taken out has 1.12."
        in text
    )
