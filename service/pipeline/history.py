"""State changes of a series row, each written to the audit trail in the same transaction.

The ``transition`` table is what a physicist reads when a study is late, so no code changes a
series' state without going through ``set_state``, which also refuses any change
``service.pipeline.states`` does not allow.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.errors import InvalidTransitionError
from service.pipeline.schema import SeriesRow, TransitionRow
from service.pipeline.states import SeriesState, can_transition


def log_transition(
    session: Session, uid: str, source: str, target: str, reason: str, now: float
) -> None:
    """Add one audit-trail entry (also for notes that change nothing: source == target)."""
    session.add(
        TransitionRow(
            series_instance_uid=uid, from_state=source, to_state=target, reason=reason, at=now
        )
    )


def set_state(
    session: Session, series: SeriesRow, target: SeriesState, reason: str, now: float
) -> None:
    """Move a series row to ``target`` with its reason, or raise InvalidTransitionError."""
    source = SeriesState(series.state)
    if not can_transition(source, target):
        raise InvalidTransitionError(
            f"series {series.series_instance_uid}: {source.value} -> {target.value} not allowed"
        )
    series.state = target.value
    series.state_reason = reason
    series.state_changed_at = now
    log_transition(session, series.series_instance_uid, source.value, target.value, reason, now)
