"""Evaluation metrics: scores of known cases (perfect match, known scale, known offset)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.evaluation.metrics import EvalCase, case_metrics, psnr_suv, ssim_suv
from model.simulate import simulate_study


@pytest.fixture(scope="module")
def case() -> EvalCase:
    """A tiny phantom with lesions, as the metrics see it."""
    return EvalCase.from_study(simulate_study(seed=7, drfs=[20.0], size="tiny"))


def test_identical_volumes_score_perfectly(case: EvalCase) -> None:
    m = case_metrics(case.full_dose_bqml.copy(), case)
    assert m.psnr_db == math.inf
    assert m.ssim == pytest.approx(1.0)
    assert m.nrmse == 0.0
    assert m.liver_bias_pct == pytest.approx(0.0, abs=1e-9)
    assert m.liver_cov_ratio == pytest.approx(1.0)
    assert m.n_lesions > 0
    assert m.lesion_max_bias_pct == pytest.approx(0.0, abs=1e-9)
    assert m.lesion_mean_bias_pct == pytest.approx(0.0, abs=1e-9)


def test_a_known_scale_gives_the_known_bias(case: EvalCase) -> None:
    m = case_metrics(case.full_dose_bqml * np.float32(1.1), case)
    assert m.liver_bias_pct == pytest.approx(10.0, abs=1e-3)
    assert m.lesion_max_bias_pct == pytest.approx(10.0, abs=1e-3)
    assert m.lesion_mean_bias_pct == pytest.approx(10.0, abs=1e-3)
    assert m.liver_cov_ratio == pytest.approx(1.0, abs=1e-5)
    assert m.ssim < 1.0


def test_psnr_of_a_known_offset() -> None:
    reference = np.full((8, 8, 8), 3.0, dtype=np.float32)
    # MSE 0.04 on a data range of 20: 10 log10(400 / 0.04) = 40 dB.
    assert psnr_suv(reference + np.float32(0.2), reference) == pytest.approx(40.0, abs=1e-3)
    assert ssim_suv(reference, reference) == pytest.approx(1.0)
