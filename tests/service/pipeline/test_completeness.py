"""Completeness rules: count, quiet + contiguous, forced timeout; the reason is kept."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from service.pipeline.completeness import Rule, contiguity_problem, decide

BASE = {"quiet_period_s": 30.0, "forced_timeout_s": 600.0, "gap_tolerance": 0.25}


def positions(n: int, step: float = 3.0) -> list[float | None]:
    return [i * step for i in range(n)]


def test_count_rule_fires_without_waiting() -> None:
    decision = decide(
        received=47, expected=47, positions=positions(47), seconds_since_last=0.1, **BASE
    )
    assert decision is not None and decision.rule is Rule.COUNT
    assert decision.reason == "count: 47 of 47 instances received"


def test_quiet_rule_needs_the_quiet_period_and_contiguity() -> None:
    assert (
        decide(received=10, expected=None, positions=positions(10), seconds_since_last=29, **BASE)
        is None
    )
    decision = decide(
        received=10, expected=None, positions=positions(10), seconds_since_last=31, **BASE
    )
    assert decision is not None and decision.rule is Rule.QUIET
    assert "10 contiguous slices" in decision.reason


def test_gap_keeps_waiting_then_fails_with_reason() -> None:
    gappy: list[float | None] = [0.0, 3.0, 6.0, 15.0, 18.0]
    assert decide(received=5, expected=None, positions=gappy, seconds_since_last=60, **BASE) is None
    decision = decide(received=5, expected=None, positions=gappy, seconds_since_last=601, **BASE)
    assert decision is not None and decision.rule is Rule.TIMEOUT and not decision.complete
    assert decision.reason.startswith("incomplete: 5 of unknown slices")
    assert "2 slice(s) missing" in decision.reason


def test_known_count_short_of_expected_fails_after_timeout() -> None:
    assert (
        decide(received=40, expected=47, positions=positions(40), seconds_since_last=100, **BASE)
        is None
    )
    decision = decide(
        received=40, expected=47, positions=positions(40), seconds_since_last=700, **BASE
    )
    assert decision is not None and decision.reason.startswith("incomplete: 40 of 47 slices")


def test_duplicate_positions_are_a_problem() -> None:
    assert contiguity_problem([0.0, 3.0, 3.0, 6.0], 0.25) is not None
    assert contiguity_problem([0.0, 3.0, None], 0.25) == "slice position unknown for some instances"


@given(
    n=st.integers(min_value=3, max_value=400),
    step=st.floats(min_value=0.5, max_value=10.0),
    start=st.floats(min_value=-2000, max_value=2000),
    order=st.randoms(use_true_random=False),
)
def test_any_regular_stack_in_any_arrival_order_is_contiguous(
    n: int, step: float, start: float, order: random.Random
) -> None:
    stack: list[float | None] = [start + i * step for i in range(n)]
    order.shuffle(stack)
    assert contiguity_problem(stack, 0.25) is None


@given(n=st.integers(min_value=4, max_value=200), missing=st.integers(min_value=1, max_value=200))
def test_any_missing_inner_slice_is_detected(n: int, missing: int) -> None:
    index = 1 + missing % (n - 2)
    stack: list[float | None] = [i * 2.0 for i in range(n) if i != index]
    assert contiguity_problem(stack, 0.25) is not None
