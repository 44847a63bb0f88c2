"""Retry timing of the Celery tasks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.pipeline.tasks import backoff_s


@given(attempt=st.integers(min_value=1, max_value=40))
def test_backoff_is_equal_jitter_within_half_and_all_of_the_capped_ceiling(attempt: int) -> None:
    base_s, cap_s = 10.0, 900.0
    ceiling = min(cap_s, base_s * 2 ** (attempt - 1))
    assert ceiling / 2 <= backoff_s(attempt, base_s, cap_s) <= ceiling
