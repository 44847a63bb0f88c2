"""The release comparison table, made from a results.json as the README shows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.evaluation.comparison import Column, comparison_markdown, main, parse_column


def _means(psnr: float, **more: float) -> dict[str, float]:
    return {"psnr_db": psnr, **more}


SHIPPED_DETAILS = {
    "liver_cov_ratio": 0.8,
    "liver_bias_pct": 1.26,
    "lesion_max_bias_pct": -9.71,
    "lesion_peak_bias_nf_pct": -1.44,
    "false_hot_spots": 1.25,
}

DOCUMENT = {
    "training_drfs": [1.0, 2.0],
    "tables": {
        "1": [
            {"method": "unipet", "means": _means(50.0, **SHIPPED_DETAILS)},
            {"method": "full_dose", "means": {"false_hot_spots": 2.31}},
        ],
        "2": [
            {"method": "gaussian", "means": _means(40.0)},
            {"method": "drf2", "means": _means(44.0)},
            {"method": "unipet", "means": _means(43.0, **SHIPPED_DETAILS)},
            {"method": "full_dose", "means": {"false_hot_spots": 2.31}},
        ],
        "3": [
            {"method": "gaussian", "means": _means(38.0)},
            {"method": "unipet", "means": _means(41.0, **SHIPPED_DETAILS)},
        ],
    },
}

COLUMNS = [Column("gaussian", "Gaussian"), Column("drf{drf}", "DRF-specific"),
           Column("unipet", "**UniPET**")]  # fmt: skip


def test_a_row_per_drf_then_the_mean_psnr_of_each_method_over_every_drf_above_1() -> None:
    lines = comparison_markdown(DOCUMENT, COLUMNS, "unipet").splitlines()
    assert lines[0] == (
        "| DRF | Gaussian | DRF-specific | **UniPET** | liver CoV ratio | liver SUVmean | "
        "lesion SUVmax | lesion SUVpeak vs noise-free | false hot spots / volume (full dose) |"
    )
    assert lines[2] == (
        "| 1 (full dose in) | - | - | - | 0.80 | +1.3 % | -9.7 % | -1.4 % | 1.2 (2.3) |"
    )
    assert lines[3].startswith("| 2 | 40.00 | 44.00 | 43.00 | 0.80 |")
    # DRF 3 was not trained, and no DRF-specific network exists for it
    assert lines[4].startswith("| 3 (unseen) | 38.00 | - | 41.00 |")
    assert lines[4].endswith("| 1.2 |"), "no full-dose figure at DRF 3: no parentheses"
    # a method missing at some DRF gets no mean rather than a mean of fewer DRFs
    assert lines[5] == "| mean of 2 DRFs | 39.00 | - | 42.00 | | | | | |"


def test_a_shipped_method_missing_from_the_results_is_an_error() -> None:
    with pytest.raises(ValueError, match="'unipet_rals' is not in the results"):
        comparison_markdown(DOCUMENT, COLUMNS, "unipet_rals")


def test_the_command_writes_the_table_and_refuses_a_bad_column(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(DOCUMENT))
    out = tmp_path / "comparison.md"
    argv = [str(results), "--shipped", "unipet", "--column", "gaussian=Gaussian",
            "--column", "unipet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    assert out.read_text() == comparison_markdown(
        DOCUMENT, [Column("gaussian", "Gaussian"), Column("unipet", "unipet")], "unipet"
    )
    assert main([str(results), "--shipped", "unipet", "--column", "=label"]) == 2
    assert parse_column("nlm=3D NLM") == Column("nlm", "3D NLM")
