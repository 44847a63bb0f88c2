"""Seed-to-seed spread over the method rows of one recipe trained with several seeds."""

from __future__ import annotations

import pytest

from model.evaluation.seeds import seed_spread, seed_spread_markdown


def _row(method: str, **means: float) -> dict[str, object]:
    return {"method": method, "means": means}


def test_spread_is_largest_minus_smallest_over_the_seeds_at_each_drf() -> None:
    tables = {
        "20": [
            _row("unipet", psnr_db=40.0, liver_cov_ratio=0.90, false_hot_spots=1.0),
            _row("unipet_s1", psnr_db=40.3, liver_cov_ratio=0.85, false_hot_spots=0.0),
            _row("unipet_s2", psnr_db=39.9, liver_cov_ratio=0.88, false_hot_spots=2.0),
            _row("vanilla", psnr_db=30.0, liver_cov_ratio=0.10, false_hot_spots=9.0),
        ],
        "4": [
            _row("unipet", psnr_db=45.0),
            _row("unipet_s1", psnr_db=45.1),
        ],
        "100": [_row("unipet", psnr_db=35.0)],  # no second seed here: left out
        "1": [_row("unipet", psnr_db=75.0), _row("unipet_s1", psnr_db=79.0)],
    }
    spreads = seed_spread(tables, ["unipet", "unipet_s1", "unipet_s2"])
    assert [s.drf for s in spreads] == [1.0, 4.0, 20.0]
    at1, at4, at20 = spreads
    assert at1.spread["psnr_db"] == pytest.approx(4.0)  # in the table, not in the summary
    assert at4.seeds == ("unipet", "unipet_s1")
    assert at4.spread["psnr_db"] == pytest.approx(0.1)
    assert at4.spread["liver_cov_ratio"] is None  # not measured for every seed
    assert at20.spread["psnr_db"] == pytest.approx(0.4)
    assert at20.spread["liver_cov_ratio"] == pytest.approx(0.05)
    assert at20.spread["false_hot_spots"] == pytest.approx(2.0)
    text = "\n".join(seed_spread_markdown(spreads))
    assert "| 20 | 0.40 |" in text
    assert "Largest PSNR spread below full dose 0.40 dB, mean 0.25 dB." in text


def test_one_seed_gives_no_spread_and_no_section() -> None:
    tables = {"20": [_row("unipet", psnr_db=40.0), _row("vanilla", psnr_db=39.0)]}
    assert seed_spread(tables, ["unipet", "unipet_s1"]) == []
    assert seed_spread_markdown([]) == []
