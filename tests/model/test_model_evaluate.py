"""The evaluation command line end to end: tables and figures written, a training seed refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from model.evaluation.methods import LOW_DOSE

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
    assert [r["method"] for r in rows] == [LOW_DOSE, "gaussian", "tuned_gaussian", "nlm"]
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
