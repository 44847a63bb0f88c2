"""Target checks computed from per-DRF evaluation tables."""

from __future__ import annotations

import pytest

from model.evaluation.targets import Tables, TargetNames, check_targets


def _row(method: str, psnr: float | None, **means: float | None) -> dict[str, object]:
    """A table row as results.json holds it."""
    return {"method": method, "n_phantoms": 2, "seconds": 1.0, "means": {"psnr_db": psnr, **means}}


def _tables() -> Tables:
    """DRF 4 (training) where UniPET meets every target; DRF 30 (unseen) where it misses."""
    return {
        "4": [
            _row("gaussian", 36.0),
            _row("nlm", 36.5),
            _row("vanilla", 37.5),
            _row("drf4", 38.05),
            _row("unipet", 38.2, liver_cov_ratio=0.95, lesion_max_bias_pct=-3.0),
        ],
        "30": [
            _row("gaussian", 31.0),
            _row("vanilla", 32.9),
            _row("drf4", 32.0),
            _row("drf100", 33.2),
            _row("unipet", 33.0, liver_cov_ratio=1.3, lesion_max_bias_pct=12.0),
        ],
    }


def test_passing_and_missing_targets() -> None:
    checks = check_targets(_tables(), training_drfs=[4.0, 100.0])
    got = [(c.check, c.drf, c.passed) for c in checks]
    assert got == [
        ("PSNR >= drf4 - 0.1 dB", 4.0, True),
        ("PSNR >= vanilla + 0.3 dB", 4.0, True),
        ("PSNR >= best of gaussian/nlm + 1 dB", 4.0, True),
        ("|liver CoV ratio - 1| <= 0.2", 4.0, True),
        ("|lesion SUVmax bias| <= 5 %", 4.0, True),
        ("PSNR >= vanilla + 0.3 dB", 30.0, False),
        ("PSNR > every DRF-specific model (unseen DRF)", 30.0, False),
        ("PSNR >= best of gaussian/nlm + 1 dB", 30.0, True),
        ("|liver CoV ratio - 1| <= 0.2", 30.0, False),
        ("|lesion SUVmax bias| <= 10 %", 30.0, False),
        ("mean PSNR over DRFs >= vanilla + 0.3 dB", None, True),
    ]
    by_key = {(c.check, c.drf): c for c in checks}
    unseen = by_key[("PSNR > every DRF-specific model (unseen DRF)", 30.0)]
    assert (unseen.value, unseen.threshold) == (33.0, 33.2)
    mean = by_key[("mean PSNR over DRFs >= vanilla + 0.3 dB", None)]
    assert mean.value == pytest.approx(35.6)
    assert mean.threshold == pytest.approx(35.5)
    assert by_key[("|liver CoV ratio - 1| <= 0.2", 30.0)].value == pytest.approx(0.3)


def test_absent_methods_and_null_figures_skip_their_checks() -> None:
    tables: Tables = {"4": [_row("unipet", 38.0, liver_cov_ratio=None, lesion_max_bias_pct=None)]}
    assert check_targets(tables, training_drfs=[4.0]) == []


def test_no_lesion_target_above_drf_100() -> None:
    tables: Tables = {"200": [_row("unipet", 30.0, lesion_max_bias_pct=50.0)]}
    assert check_targets(tables, training_drfs=[4.0]) == []


def test_threshold_sums_are_compared_with_a_float_tolerance() -> None:
    # 29.7 + 0.3 is 29.999999999999996 in binary floating point.
    tables: Tables = {"4": [_row("vanilla", 29.7), _row("unipet", 30.0)]}
    checks = check_targets(tables, training_drfs=[4.0])
    assert [c.passed for c in checks] == [True, True]


def test_method_names_are_configurable() -> None:
    tables: Tables = {"4": [_row("plain", 30.0), _row("mine", 31.0), _row("unipet", 10.0)]}
    checks = check_targets(tables, [4.0], TargetNames(unipet="mine", vanilla="plain"))
    assert [(c.check, c.value, c.passed) for c in checks[:1]] == [
        ("PSNR >= plain + 0.3 dB", 31.0, True)
    ]
