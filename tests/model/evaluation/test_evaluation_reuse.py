"""Reusing an earlier evaluation: unchanged methods are taken, changed ones run again."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from model.evaluate import main
from model.evaluation.metrics import CaseMetrics, LesionRecord
from model.evaluation.report import REFERENCE_NOTE, _jsonable
from model.evaluation.reuse import case_row_from_json, load_reusable
from model.evaluation.tables import CaseRow
from model.networks import NetworkConfig, UniPETNet
from model.weights_io import save_weights


def _network(path: Path, seed: int) -> Path:
    """A tiny network whose output differs from seed to seed."""
    torch.manual_seed(seed)
    net = UniPETNet(NetworkConfig(widths=(4, 8, 8), code_dim=4, style_width=4))
    with torch.no_grad():
        net.head.weight.normal_(0.0, 0.1)
    save_weights(net, path, version="t")
    return path


def _evaluate(out: Path, weights: Path, *extra: str) -> dict[str, object]:
    argv = ["--dataset", "train:0-3,test:91-92", "--size", "tiny", "--drfs", "20",
            "--methods", "gaussian", f"net={weights}", "--out", str(out), *extra]  # fmt: skip
    assert main(argv) == 0
    document: dict[str, object] = json.loads((out / "results.json").read_text())
    return document


def _cases(document: dict[str, object], seed: int, method: str) -> list[dict[str, object]]:
    cases = document["cases"]
    assert isinstance(cases, list)
    return [c for c in cases if c["seed"] == seed and c["method"] == method]


def test_unchanged_methods_are_taken_and_changed_ones_run_again(tmp_path: Path) -> None:
    first = _evaluate(tmp_path / "a", _network(tmp_path / "a.safetensors", 0))
    methods = first["methods"]
    assert isinstance(methods, dict)
    assert methods["gaussian"] == "gaussian 5 mm FWHM"
    assert str(methods["net"]).startswith("network sha256:")
    assert str(methods["net"]).endswith("+ matched gaussian")

    changed = _network(tmp_path / "b.safetensors", 1)  # same name, other weights
    earlier = str(tmp_path / "a" / "results.json")
    second = _evaluate(tmp_path / "b", changed, "--reuse", earlier, "--jobs", "2")  # in workers

    # seed 92 is not the first phantom: its Gaussian rows are the earlier ones, seconds too
    assert _cases(second, 92, "gaussian") == _cases(first, 92, "gaussian")
    assert _cases(second, 92, "low_dose") == _cases(first, 92, "low_dose")
    # the network changed, so it and its matched Gaussian ran again
    (before,), (after,) = _cases(first, 92, "net"), _cases(second, 92, "net")
    assert before["metrics"] != after["metrics"]
    (before,), (after,) = (
        _cases(first, 92, "gaussian_matched_net"),
        _cases(second, 92, "gaussian_matched_net"),
    )
    assert before["seconds"] != after["seconds"]
    # the first phantom draws the MIP figures, so it is computed in full
    (before,), (after,) = _cases(first, 91, "gaussian"), _cases(second, 91, "gaussian")
    assert before["seconds"] != after["seconds"]
    assert second["tables"] != first["tables"]


def test_an_evaluation_with_other_metric_definitions_is_not_reused(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"methods": {"gaussian": "gaussian"}, "cases": [],
                                "reference": "another note"}))  # fmt: skip
    with pytest.raises(ValueError, match="other metric definitions"):
        load_reusable(path, {"gaussian": "gaussian"}, REFERENCE_NOTE)
    path.write_text(json.dumps({"cases": [], "reference": REFERENCE_NOTE}))
    with pytest.raises(ValueError, match="no evaluation whose methods can be reused"):
        load_reusable(path, {"gaussian": "gaussian"}, REFERENCE_NOTE)


def test_a_case_row_reads_back_as_written() -> None:
    metrics = CaseMetrics(math.inf, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, -3.0, 0.5, 1, 0.0, math.nan)
    lesion = LesionRecord(2, 12.0, 5.5, 4.1, 0.0, 0.0, 3.0, -1.0, math.nan, 0.08)
    row = CaseRow(91, 20.0, "low_dose", 0.5, metrics, (lesion,), "ds", "scanner-a", False, 4.5)
    written = json.loads(json.dumps(_jsonable(dataclasses.asdict(row)), allow_nan=False))
    back = case_row_from_json(written)
    assert back.metrics.psnr_db == math.inf  # identical to the full dose: NRMSE 0
    assert math.isnan(back.metrics.false_hot_spots)
    assert math.isnan(back.lesions[0].contrast_recovery)
    assert _jsonable(dataclasses.asdict(back)) == _jsonable(dataclasses.asdict(row))
    noisy = dict(written, metrics={**written["metrics"], "nrmse": 0.2})
    assert math.isnan(case_row_from_json(noisy).metrics.psnr_db)


def _document(path: Path, methods: dict[str, str], seconds: float) -> Path:
    """A results.json holding one row per method at seed 92, DRF 20."""
    metrics = CaseMetrics(40.0, 0.1, 0.9, 1.0, 0.8, 0.0, -2.0, -3.0, 0.5, 1, 0.0, 0.2)
    rows = [CaseRow(92, 20.0, name, seconds, metrics, (), "ds", "scanner-a", False, 18.0)
            for name in methods]  # fmt: skip
    cases = [_jsonable(dataclasses.asdict(row)) for row in rows]
    path.write_text(json.dumps({"methods": methods, "cases": cases, "reference": REFERENCE_NOTE}))
    return path


def test_several_evaluations_give_each_method_from_the_first_that_made_it_the_same_way(
    tmp_path: Path,
) -> None:
    older = _document(tmp_path / "a.json", {"gaussian": "g", "net": "old weights"}, 1.0)
    newer = _document(tmp_path / "b.json", {"gaussian": "g", "net": "new weights"}, 2.0)
    wanted = {"gaussian": "g", "net": "new weights", "nlm": "nlm"}

    reused = load_reusable([older, newer], wanted, REFERENCE_NOTE)

    (gaussian,) = reused.take("ds", 92, 20.0, "gaussian")
    assert gaussian.seconds == 1.0, "the first file that has it, never both files' rows"
    (net,) = reused.take("ds", 92, 20.0, "net")
    assert net.seconds == 2.0, "only the file whose weights match"
    assert reused.take("ds", 92, 20.0, "nlm") == [], "in no file: computed"
    assert len(reused) == 2
