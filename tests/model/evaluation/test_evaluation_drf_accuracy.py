"""DRF estimate accuracy: known records give known figures; the evaluation CLI reports them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model.drf_estimate import fit_drf_calibration, noise_features
from model.evaluate import main
from model.evaluation.drf_accuracy import (
    DrfRecord,
    drf_markdown,
    factor_error,
    overall_accuracy,
    patient_spread,
    percentile_factor_error,
    summarise_by_drf,
)
from model.networks import NetworkConfig, UniPETNet
from model.simulate import simulate_study
from model.weights_io import save_weights

REPO = Path(__file__).resolve().parents[3]
TRAINING = (4.0, 10.0, 20.0, 50.0, 100.0)
# DRF 20: errors 2, 1, 2 (one of three within 1.5); DRF 7: errors 1, 1.2 (both within).
RECORDS = [
    DrfRecord(90, 20.0, 10.0),
    DrfRecord(91, 20.0, 20.0),
    DrfRecord(92, 20.0, 40.0),
    DrfRecord(90, 7.0, 7.0),
    DrfRecord(91, 7.0, 8.4),
]


def test_factor_error_is_symmetric_in_over_and_under_estimates() -> None:
    assert factor_error(40.0, 20.0) == 2.0
    assert factor_error(10.0, 20.0) == 2.0
    assert factor_error(20.0, 20.0) == 1.0


def test_factor_error_refuses_a_zero_estimate() -> None:
    with pytest.raises(ValueError, match="positive"):
        factor_error(0.0, 20.0)


def test_summary_per_drf_of_known_records() -> None:
    twenty, seven = summarise_by_drf(RECORDS, TRAINING)
    assert (twenty.drf, twenty.training, twenty.n) == (20.0, True, 3)
    assert twenty.median_estimate == 20.0
    assert twenty.median_factor_error == 2.0
    assert twenty.fraction_within_band == pytest.approx(1 / 3)
    assert (seven.drf, seven.training, seven.n) == (7.0, False, 2)
    assert seven.median_estimate == pytest.approx(7.7)
    assert seven.median_factor_error == pytest.approx(1.1)
    assert seven.fraction_within_band == 1.0


def test_overall_pools_every_case() -> None:
    overall = overall_accuracy(RECORDS)
    assert overall.n == 5
    assert overall.median_factor_error == pytest.approx(1.2)  # of 2, 1, 2, 1, 1.2
    assert overall.fraction_within_band == pytest.approx(0.6)


def test_overall_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="no DRF estimates"):
        overall_accuracy([])


def test_markdown_rows_and_overall_line() -> None:
    text = drf_markdown(summarise_by_drf(RECORDS, TRAINING), overall_accuracy(RECORDS), "w")
    assert "| 20 | training | 3 | 20.0 | 2.00 | 33% |" in text
    assert "| 7 | unseen | 2 | 7.7 | 1.10 | 100% |" in text
    assert "Overall: median factor error 1.20 over 5 cases, 60% within x1.5." in text


def test_the_90th_percentile_of_the_factor_error() -> None:
    # Errors 1, 1, 1.2, 2, 2: the 90th percentile interpolates between the last two.
    assert percentile_factor_error(RECORDS) == pytest.approx(2.0)
    assert percentile_factor_error(RECORDS, 50.0) == pytest.approx(1.2)
    text = drf_markdown(summarise_by_drf(RECORDS, TRAINING), overall_accuracy(RECORDS), "w", 2.0)
    assert "60% within x1.5. 90th percentile factor error 2.00." in text


def test_the_patient_spread_sets_a_floor_and_can_be_taken_out() -> None:
    # Phantom 1 drawn 10 % noisier reads as DRF x1.21, phantom 2 10 % quieter as /1.21; an
    # estimate that follows the noise exactly is off by 1.21 on both and exact without it.
    records = [
        DrfRecord(1, 10.0, 12.1, 1.1),
        DrfRecord(2, 10.0, 10.0 / 1.21, 1 / 1.1),
        DrfRecord(3, 20.0, 40.0, 1.0),
    ]
    spread = patient_spread(records)
    assert spread is not None and spread.n == 3
    assert spread.floor_median_factor_error == pytest.approx(1.21)
    assert spread.median_factor_error_without_spread == pytest.approx(1.0)
    text = drf_markdown(
        summarise_by_drf(records, TRAINING), overall_accuracy(records), "w", None, spread
    )
    assert "exact but for it would have a median factor error of 1.21 on these 3 cases" in text
    assert "drawn spread taken out has 1.00." in text


def test_no_floor_is_claimed_when_a_phantom_drew_no_spread() -> None:
    assert patient_spread(RECORDS) is None
    assert patient_spread([*RECORDS[:1], DrfRecord(5, 4.0, 4.0, 1.1)]) is None
    assert "spread" not in drf_markdown(
        summarise_by_drf(RECORDS, TRAINING), overall_accuracy(RECORDS), "w"
    )


def _tiny_weights(path: Path, calibrated: bool) -> Path:
    """A tiny network, with a DRF calibration fitted on three tiny phantoms when asked."""
    torch.manual_seed(0)
    net = UniPETNet(NetworkConfig(widths=(8, 8, 8), code_dim=4, style_width=4))
    extra = {}
    if calibrated:
        rows, drfs, groups = [], [], []
        for seed in range(3):
            study = simulate_study(seed, [4.0, 20.0, 100.0], size="tiny")
            for drf, volume in study.low_dose_bqml.items():
                rows.append(noise_features(volume, study.suv_per_bqml))
                drfs.append(drf)
                groups.append(seed)
        extra["drf_calibration"] = fit_drf_calibration(np.stack(rows), drfs, groups).to_json()
    save_weights(net, path, version="0", extra=extra)
    return path


def test_cli_reports_drf_estimate_accuracy(tmp_path: Path) -> None:
    weights = _tiny_weights(tmp_path / "net.safetensors", calibrated=True)
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "model.evaluate", "--dataset", "train:0-3,test:91",
           "--size", "tiny", "--methods", "gaussian", "--drfs", "20", "7",
           "--drf-estimator", str(weights), "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "DRF estimate of the low-dose input (net.safetensors)" in done.stdout
    document = json.loads((out / "drf_estimate.json").read_text())
    assert [(r["seed"], r["drf"]) for r in document["records"]] == [(91, 20.0), (91, 7.0)]
    assert [(s["drf"], s["training"]) for s in document["per_drf"]] == [(20.0, True), (7.0, False)]
    assert document["overall"]["n"] == 2
    assert "patient_spread" not in document  # the tiny phantoms draw no patient spread
    assert all(r["estimate"] >= 1.0 for r in document["records"])
    estimates = {r["drf"]: r["estimate"] for r in document["records"]}
    assert estimates[20.0] > estimates[7.0]  # noisier input, larger estimate
    results = (out / "results.md").read_text()
    assert results.index("| gaussian |") < results.index("median factor error")


def test_cli_says_when_the_weights_have_no_calibration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = _tiny_weights(tmp_path / "plain.safetensors", calibrated=False)
    out = tmp_path / "eval"
    argv = ["--dataset", "test:91", "--size", "tiny", "--methods", "gaussian", "--drfs", "20",
            "--drf-estimator", str(weights), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert "carries no DRF calibration" in capsys.readouterr().out
    assert not (out / "drf_estimate.json").exists()
    assert "factor error" not in (out / "results.md").read_text()


def test_cli_refuses_a_seed_the_calibration_saw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = _tiny_weights(tmp_path / "net.safetensors", calibrated=False)
    (tmp_path / "net.json").write_text(json.dumps({"data": {"train_seeds": [91]}}))
    argv = ["--dataset", "test:91", "--size", "tiny", "--methods", "gaussian",
            "--drf-estimator", str(weights), "--out", str(tmp_path / "eval")]  # fmt: skip
    assert main(argv) == 2
    assert "DRF calibration" in capsys.readouterr().err
