"""The rows a received instance writes: its series (made on first sight), itself, the count.

``StateStore.record_instance`` records one instance per transaction; the listener's group
commit records a batch in one (``record_arrivals``), touching each series row once per batch.
The statements are built once and run with parameters: building them per instance cost more
than the SQL itself (SQLAlchemy derives a cache key from every value embedded in a statement).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import cast

from sqlalchemy import Executable, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from service.errors import SeriesNotFoundError
from service.pipeline.deliveries import reset_deliveries
from service.pipeline.history import log_transition, set_state
from service.pipeline.records import ReceivedInstance
from service.pipeline.schema import SeriesRow, metadata
from service.pipeline.states import (
    REOPEN_ON_NEW_INSTANCE,
    PendingStep,
    SeriesState,
    can_transition,
)

#: States a *new* SOP Instance re-opens besides ``REOPEN_ON_NEW_INSTANCE``: the running job's
#: final compare-and-set then fails and its output is discarded.
_REOPEN_ON_NEW_ONLY = frozenset(
    {SeriesState.QUEUED, SeriesState.PROCESSING, SeriesState.WRITTEN, SeriesState.SENDING}
)


@functools.cache
def _insert_ignoring(dialect: str, table: str, *, returning: bool = False) -> Executable:
    """``INSERT ... ON CONFLICT DO NOTHING`` for one table, built once per dialect.

    Two associations recording the first instance of one series at once must not turn a
    valid instance into an IntegrityError: the loser simply finds the winner's row.
    """
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(metadata.tables[table]).on_conflict_do_nothing()
    if returning:  # which rows were new, also for many rows at once (executemany)
        return statement.returning(*metadata.tables[table].primary_key.columns)
    return statement


_INSTANCE = metadata.tables["instance"]
# Core statements on the table (not the ORM class): a list of parameters is then a plain
# executemany, not an ORM bulk update by primary key.
_TOUCH_INSTANCE = (
    update(_INSTANCE)
    .where(_INSTANCE.c.sop_instance_uid == bindparam("uid"))
    .values(received_at=bindparam("now"))
)
_COUNT_INSTANCES = (
    select(func.count())
    .select_from(_INSTANCE)
    .where(_INSTANCE.c.series_instance_uid == bindparam("uid"))
)
_COUNT_BY_SERIES = (
    select(_INSTANCE.c.series_instance_uid, func.count())
    .where(_INSTANCE.c.series_instance_uid.in_(bindparam("uids", expanding=True)))
    .group_by(_INSTANCE.c.series_instance_uid)
)


def _inserted(session: Session, table: str, values: dict[str, object]) -> bool:
    statement = _insert_ignoring(session.get_bind().dialect.name, table)
    result = cast(CursorResult[object], session.execute(statement, values))
    return bool(result.rowcount)


def record_arrival(session: Session, item: ReceivedInstance, now: float) -> SeriesRow:
    """Record one instance (see ``StateStore.record_instance``); returns its series row."""
    series = _series_row(session, item, now)
    is_new = _instance_row(session, item, now)
    series.received_instances = _count(session, item.series_instance_uid)
    _update_series(session, series, item, is_new=is_new, now=now)
    return series


def record_arrivals(session: Session, items: Sequence[ReceivedInstance], now: float) -> None:
    """Record a batch as ``record_arrival`` one after the other would, in a few statements.

    New series rows, new instance rows, the re-sent instances' times and the recounts are
    one statement each for the whole batch (executemany with RETURNING tells which rows are
    new); the series rows are read once. Instances then apply to their series row in arrival
    order, so re-open and reject decisions are those of one-by-one recording.
    """
    rows = _series_rows(session, items, now)
    new = _new_instances(session, items, now)
    resent: list[dict[str, object]] = []
    for item in items:
        is_new = item.sop_instance_uid in new
        new.discard(item.sop_instance_uid)  # the same instance twice: the second is a re-send
        if not is_new:
            resent.append({"uid": item.sop_instance_uid, "now": now})
        _update_series(session, rows[item.series_instance_uid], item, is_new=is_new, now=now)
    if resent:
        session.execute(_TOUCH_INSTANCE, resent)
    counts = {
        str(uid): int(count)
        for uid, count in session.execute(_COUNT_BY_SERIES, {"uids": list(rows)})
    }
    for uid, series in rows.items():
        series.received_instances = counts.get(uid, 0)
    session.flush()


def _series_rows(
    session: Session, items: Sequence[ReceivedInstance], now: float
) -> dict[str, SeriesRow]:
    """The series rows of a batch, each new one made from its first instance."""
    firsts: dict[str, ReceivedInstance] = {}
    for item in items:
        firsts.setdefault(item.series_instance_uid, item)
    created = _insert_new(session, "series", [_series_values(i, now) for i in firsts.values()])
    for uid, first in firsts.items():
        if uid in created:
            log_transition(session, uid, "", first.outcome_state.value, first.outcome_reason, now)
    rows = {
        row.series_instance_uid: row
        for row in session.scalars(
            select(SeriesRow).where(SeriesRow.series_instance_uid.in_(firsts)).with_for_update()
        )
    }
    if missing := set(firsts) - set(rows):  # deleted in between: cannot happen in SQL
        raise SeriesNotFoundError(f"no series {sorted(missing)[0]}")
    return rows


def _new_instances(session: Session, items: Sequence[ReceivedInstance], now: float) -> set[str]:
    """Insert the instance rows not there yet; their SOP Instance UIDs."""
    unique: dict[str, ReceivedInstance] = {}
    for item in items:
        unique.setdefault(item.sop_instance_uid, item)
    return _insert_new(session, "instance", [_instance_values(i, now) for i in unique.values()])


def _insert_new(session: Session, table: str, rows: list[dict[str, object]]) -> set[str]:
    """Insert-or-nothing many rows in one statement; the primary keys of those inserted."""
    statement = _insert_ignoring(session.get_bind().dialect.name, table, returning=True)
    return set(session.execute(statement, rows).scalars().all())


def _series_row(session: Session, item: ReceivedInstance, now: float) -> SeriesRow:
    """The series row, created from this instance when it is the first one seen."""
    uid = item.series_instance_uid
    if _inserted(session, "series", _series_values(item, now)):
        log_transition(session, uid, "", item.outcome_state.value, item.outcome_reason, now)
    series = session.get(SeriesRow, uid, with_for_update=True)
    if series is None:  # deleted between the two statements: cannot happen in SQL
        raise SeriesNotFoundError(f"no series {uid}")
    return series


def _series_values(item: ReceivedInstance, now: float) -> dict[str, object]:
    """Columns of a series row made from its first instance."""
    return {
        "series_instance_uid": item.series_instance_uid,
        "study_instance_uid": item.study_instance_uid,
        "calling_aet": item.calling_aet,
        "modality": item.modality,
        "series_description": item.series_description,
        "state": item.outcome_state.value,
        "state_reason": item.outcome_reason,
        "state_changed_at": now,
        "expected_instances": item.expected_instances,
        "received_instances": 0,
        "first_received_at": now,
        "last_received_at": now,
        "attempts": 0,
        "last_error": "",
        "pending_step": PendingStep.NONE.value,
        "completeness_reason": "",
        "algorithm": "",
    }


def _instance_row(session: Session, item: ReceivedInstance, now: float) -> bool:
    """Insert the instance row; True when new. A re-send keeps its first hash and size."""
    if _inserted(session, "instance", _instance_values(item, now)):
        return True
    session.execute(_TOUCH_INSTANCE, {"uid": item.sop_instance_uid, "now": now})
    return False


def _instance_values(item: ReceivedInstance, now: float) -> dict[str, object]:
    return {
        "sop_instance_uid": item.sop_instance_uid,
        "series_instance_uid": item.series_instance_uid,
        "sop_class_uid": item.sop_class_uid,
        "spool_key": item.spool_key,
        "sha256": item.sha256,
        "size_bytes": item.size_bytes,
        "slice_position_mm": item.slice_position_mm,
        "received_at": now,
    }


def _count(session: Session, series_uid: str) -> int:
    """Instances of a series, counted from their rows (a re-send never double counts)."""
    return int(session.scalar(_COUNT_INSTANCES, {"uid": series_uid}) or 0)


def _update_series(
    session: Session, series: SeriesRow, item: ReceivedInstance, *, is_new: bool, now: float
) -> None:
    series.last_received_at = now
    series.calling_aet = item.calling_aet
    if item.expected_instances is not None:
        series.expected_instances = item.expected_instances
    if item.outcome_state is SeriesState.REJECTED:
        _reject(session, series, item, now)
    else:
        _reopen(session, series, item, is_new=is_new, now=now)


def _reject(session: Session, series: SeriesRow, item: ReceivedInstance, now: float) -> None:
    """A REJECTED instance rejects its whole series: part of a volume cannot be denoised."""
    state = SeriesState(series.state)
    if state is SeriesState.REJECTED:
        return
    if state is not SeriesState.RECEIVING and can_transition(state, SeriesState.RECEIVING):
        set_state(session, series, SeriesState.RECEIVING, "instance added", now)
    if can_transition(SeriesState(series.state), SeriesState.REJECTED):
        reason = f"instance {item.sop_instance_uid}: {item.outcome_reason}"
        set_state(session, series, SeriesState.REJECTED, reason, now)
        series.lease_expires_at = None


def _reopen(
    session: Session, series: SeriesRow, item: ReceivedInstance, *, is_new: bool, now: float
) -> None:
    """A new instance re-opens a finished or running series; an identical re-send a finished one."""
    state = SeriesState(series.state)
    reopen = state in REOPEN_ON_NEW_INSTANCE or (is_new and state in _REOPEN_ON_NEW_ONLY)
    if not (reopen and item.outcome_state is SeriesState.RECEIVING):
        return
    reason = f"{'new' if is_new else 're-sent'} instance after {state.value}"
    set_state(session, series, SeriesState.RECEIVING, reason, now)
    series.completeness_reason = ""
    series.attempts = 0
    series.last_error = ""
    series.lease_expires_at = None
    series.purged_at = None
    reset_deliveries(session, series.series_instance_uid)
