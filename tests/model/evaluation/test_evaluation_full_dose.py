"""The full-dose-in check: the input itself passes, a blurred copy misses."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from model.baselines import gaussian_postfilter
from model.evaluation.drf_accuracy import DrfRecord
from model.evaluation.full_dose import FULL_DOSE_DRF, full_dose_input, full_dose_markdown
from model.evaluation.metrics import EvalCase, PreparedCase, prepare_case, score
from model.evaluation.tables import CaseRow
from model.evaluation.targets import TargetCheck, check_targets
from model.simulate import simulate_study


@pytest.fixture(scope="module")
def prepared() -> PreparedCase:
    """A tiny phantom with lesions."""
    return prepare_case(EvalCase.from_study(simulate_study(seed=7, drfs=[20.0], size="tiny")))


CHECKS = [
    "full-dose input: |hottest-lesion SUVmax change| <= 2 % (worst phantom)",
    "full-dose input: liver CoV / input CoV >= 0.85 (worst phantom)",
    "full-dose input: DRF estimate <= 1.5 (highest)",
]


def _targets(
    output: npt.NDArray[np.float32], prepared: PreparedCase, estimate: float
) -> list[TargetCheck]:
    """The full-dose targets of one output at DRF 1 with the input's DRF estimate."""
    metrics, lesions = score(output, prepared)
    row = CaseRow(7, FULL_DOSE_DRF, "unipet", 1.0, metrics, lesions)
    check = full_dose_input([row], [DrfRecord(7, FULL_DOSE_DRF, estimate)], ["unipet"])
    assert check is not None
    assert "| unipet |" in "\n".join(full_dose_markdown(check))
    return check_targets({}, [], full_dose=check)


def test_an_unchanged_full_dose_passes(prepared: PreparedCase) -> None:
    targets = _targets(prepared.case.full_dose_bqml.copy(), prepared, estimate=1.1)
    assert [t.check for t in targets] == CHECKS
    assert [t.passed for t in targets] == [True, True, True]
    assert targets[0].value == pytest.approx(0.0, abs=1e-9)
    assert targets[1].value == pytest.approx(1.0)


def test_a_blurred_full_dose_misses(prepared: PreparedCase) -> None:
    case = prepared.case
    blurred = gaussian_postfilter(case.full_dose_bqml, case.spacing_mm, 20.0)
    targets = _targets(blurred, prepared, estimate=2.0)
    assert [t.check for t in targets] == CHECKS
    assert [t.passed for t in targets] == [False, False, False]


def test_no_drf_one_rows_means_no_check(prepared: PreparedCase) -> None:
    metrics, lesions = score(prepared.case.full_dose_bqml, prepared)
    assert full_dose_input([CaseRow(7, 20.0, "unipet", 1.0, metrics, lesions)], [], []) is None
