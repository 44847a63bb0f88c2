"""Target checks computed from per-DRF evaluation tables."""

from __future__ import annotations

import pytest

from model.evaluation.drf_accuracy import DrfOverall
from model.evaluation.full_dose import FullDoseInput, FullDoseRow
from model.evaluation.targets import (
    LIMITS_1_0,
    Tables,
    TargetLimits,
    TargetNames,
    check_targets,
    limits_for_version,
    targets_markdown,
)


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
        ("|liver CoV ratio - 1| <= 0.15", 4.0, True),
        ("|lesion SUVmax bias| <= 5 %", 4.0, True),
        ("PSNR >= vanilla + 0.3 dB", 30.0, False),
        ("PSNR > every DRF-specific model (unseen DRF)", 30.0, False),
        ("PSNR >= best of gaussian/nlm + 1 dB", 30.0, True),
        ("|liver CoV ratio - 1| <= 0.15", 30.0, False),
        ("|lesion SUVmax bias| <= 10 %", 30.0, False),
        ("mean PSNR over DRFs >= vanilla + 0.3 dB", None, True),
    ]
    by_key = {(c.check, c.drf): c for c in checks}
    unseen = by_key[("PSNR > every DRF-specific model (unseen DRF)", 30.0)]
    assert (unseen.value, unseen.threshold) == (33.0, 33.2)
    mean = by_key[("mean PSNR over DRFs >= vanilla + 0.3 dB", None)]
    assert mean.value == pytest.approx(35.6)
    assert mean.threshold == pytest.approx(35.5)
    assert by_key[("|liver CoV ratio - 1| <= 0.15", 30.0)].value == pytest.approx(0.3)


def test_psnr_at_the_full_dose_is_left_out_of_the_psnr_targets() -> None:
    # A full-dose input is the reference itself: a near-identity network scores 75 dB there
    full_dose = [_row("gaussian", 47.0), _row("vanilla", 62.0), _row("unipet", 75.0)]
    tables: Tables = {**_tables(), "1": full_dose}
    checks = check_targets(tables, training_drfs=[1.0, 4.0, 100.0])
    assert not [c for c in checks if c.drf == 1.0 and "PSNR" in c.check]
    mean = next(c for c in checks if c.check.startswith("mean PSNR"))
    assert mean.value == pytest.approx(35.6)  # DRFs 4 and 30 only
    assert mean.passed


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


def _lesion_tables() -> Tables:
    """DRF 20 where UniPET meets the lesion-first targets, 33 (no SUVpeak target), 50 where
    it misses them."""
    return {
        "20": [
            _row("unipet", 30.0, lesion_peak_bias_nf_pct=-4.0, lesion_peak_bias_fd_pct=-4.5,
                 cr_10_13=0.62, false_hot_spots=0.5),
            _row("gaussian_matched_unipet", 29.0, cr_10_13=0.55),
            _row("full_dose", None, false_hot_spots=1.0),
        ],
        "33": [_row("unipet", 29.0, lesion_peak_bias_nf_pct=-30.0)],
        "50": [
            _row("unipet", 28.0, lesion_peak_bias_nf_pct=-12.0, lesion_peak_bias_fd_pct=None,
                 cr_10_13=0.3, false_hot_spots=2.0),
            _row("gaussian_matched_unipet", 27.0, cr_10_13=0.5),
            _row("full_dose", None, false_hot_spots=1.0),
        ],
    }  # fmt: skip


def test_lesion_first_targets_pass_and_miss() -> None:
    checks = check_targets(_lesion_tables(), training_drfs=[20.0, 50.0])
    got = [(c.check, c.drf, c.value, c.threshold, c.passed) for c in checks]
    assert got == [
        ("|median lesion SUVpeak bias vs noise-free| <= 5 %", 20.0, 4.0, 5.0, True),
        ("|median lesion SUVpeak bias vs full dose| <= 5 %", 20.0, 4.5, 5.0, True),
        ("CR of 10-13 mm lesions >= gaussian_matched_unipet (same liver noise)", 20.0, 0.62,
         0.55, True),
        ("false hot spots per volume <= full_dose", 20.0, 0.5, 1.0, True),
        ("|median lesion SUVpeak bias vs noise-free| <= 10 %", 50.0, 12.0, 10.0, False),
        ("false hot spots per volume <= full_dose", 50.0, 2.0, 1.0, False),
    ]  # fmt: skip


def test_full_dose_and_drf_estimate_targets() -> None:
    check = FullDoseInput(
        n_phantoms=3,
        drf_estimate=1.7,
        methods=(FullDoseRow("unipet", 3, -1.5, 0.8), FullDoseRow("vanilla", 3, 9.0, 0.5)),
    )
    checks = check_targets({}, [], full_dose=check, drf_overall=DrfOverall(40, 1.12, 0.85))
    got = [(c.check, c.drf, c.value, c.passed) for c in checks]
    assert got == [
        ("full-dose input: |hottest-lesion SUVmax change| <= 2 % (worst phantom)", 1.0, 1.5, True),
        ("full-dose input: liver CoV / input CoV >= 0.85 (worst phantom)", 1.0, 0.8, False),
        ("full-dose input: DRF estimate <= 1.5 (highest)", 1.0, 1.7, False),
        ("DRF estimate: median factor error <= 1.15", None, 1.12, True),
        ("DRF estimate: share within x1.5 >= 90%", None, 0.85, False),
    ]


def test_release_1_0_keeps_its_own_targets() -> None:
    tables = {**_tables(), **_lesion_tables()}
    old = check_targets(tables, [4.0], limits=limits_for_version("1.0.0"),
                        drf_overall=DrfOverall(40, 1.5, 0.5))  # fmt: skip
    assert {c.check for c in old} >= {"|liver CoV ratio - 1| <= 0.2"}
    assert not [c for c in old if "SUVpeak" in c.check or "DRF estimate" in c.check]
    assert not [c for c in old if "hot spots" in c.check or "CR of" in c.check]
    assert limits_for_version("1.1.0") == TargetLimits()
    assert limits_for_version("1.0.12") == LIMITS_1_0
    assert limits_for_version("1.10.0") == TargetLimits()


def test_targets_render_as_a_markdown_section() -> None:
    lines = targets_markdown(check_targets(_tables(), training_drfs=[4.0, 100.0]))
    assert lines[:3] == ["## Targets", "", "7 of 11 checks met."]
    assert "| \\|liver CoV ratio - 1\\| <= 0.15 | 4 | 0.050 | 0.150 | PASS |" in lines
