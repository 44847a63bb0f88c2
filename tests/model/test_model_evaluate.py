"""The evaluation command line end to end: tables and figures written, a training seed refused,
cached dataset folders scored lesion-first."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.evaluate import main
from model.evaluation.methods import FULL_DOSE, LOW_DOSE, NOISE_FREE
from model.networks import NetworkConfig, UniPETNet
from model.weights_io import save_weights

REPO = Path(__file__).resolve().parents[2]


def test_cli_writes_tables_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "model.evaluate", "--dataset", "train:0-3,test:91",
           "--size", "tiny", "--methods", "gaussian", "tuned_gaussian", "nlm",
           "--drfs", "20", "7", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "unseen DRF" in done.stdout
    document = json.loads((out / "results.json").read_text())
    assert document["test_seeds"] == [91]
    rows = document["tables"]["20"]
    assert [r["method"] for r in rows] == [
        LOW_DOSE,
        "gaussian",
        "tuned_gaussian",
        "nlm",
        FULL_DOSE,
        NOISE_FREE,
    ]
    low, nlm = rows[0]["means"], rows[3]["means"]
    assert nlm["psnr_db"] > low["psnr_db"]
    assert nlm["liver_cov_ratio"] < low["liver_cov_ratio"]
    assert "| nlm |" in (out / "results.md").read_text()
    for drf in ("20", "7"):
        assert (out / f"mip_drf{drf}.png").stat().st_size > 1000


def test_cli_refuses_a_training_seed(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "model.evaluate", "--dataset", "2000",
           "--size", "tiny", "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "seen before evaluation" in done.stderr


def test_cli_scores_cached_folders_lesion_first(
    cached_datasets: tuple[Path, Path], tmp_path: Path
) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "net.safetensors"
    save_weights(
        UniPETNet(NetworkConfig(widths=(4, 8, 8), code_dim=4, style_width=4)), weights, "t"
    )
    out = tmp_path / "eval"
    trained, unseen = (str(d) for d in cached_datasets)
    cmd = [sys.executable, "-m", "model.evaluate", "--dataset", trained, "--dataset", unseen,
           "--cached", "--methods", "gaussian", f"unipet={weights}", "--out", str(out)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    document = json.loads((out / "results.json").read_text())
    assert document["drfs"] == [1.0, 20.0]
    methods = [r["method"] for r in document["tables"]["20"]]
    assert methods == [LOW_DOSE, "gaussian", "unipet", "gaussian_matched_unipet", FULL_DOSE,
                       NOISE_FREE]  # fmt: skip
    means = document["tables"]["20"][3]["means"]
    assert means["matched_fwhm_mm"] >= 0.0
    assert {"lesion_peak_bias_nf_pct", "cr_10_13", "bv_gt20", "false_hot_spots"} <= set(means)
    assert {"trained scanners", "unseen scanners"} <= set(document["groups"])
    check = document["full_dose_input"]
    assert [r["method"] for r in check["methods"]][:3] == [LOW_DOSE, "gaussian", "unipet"]
    targets = {t["check"] for t in document["targets"]}
    assert "full-dose input: liver CoV / input CoV >= 0.85 (worst phantom)" in targets
    text = (out / "results.md").read_text()
    for heading in (
        "## Lesions",
        "## NEMA NU 2",
        "## By scanner",
        "## Full-dose input",
        "## Targets",
    ):
        assert heading in text


def test_a_matched_gaussian_for_no_network_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--dataset", "test:91", "--size", "tiny", "--methods", "gaussian",
            "--matched-gaussian", "gaussian", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 2
    assert "no network methods" in capsys.readouterr().err
