"""Series and instance state in a SQL database (SQLite by default, any SQLAlchemy URL).

Every process (listener, watcher, workers, web) opens the same database; changes are
compare-and-set updates (``UPDATE ... WHERE state IN (...)``), so two workers on two hosts can
never both claim a series, and a duplicate Celery delivery finds nothing to do. Every state
change is written to the ``transition`` table with time and reason: the audit trail a physicist
asks for when a study is late. Opening a store brings the database schema to the newest
migration first (``service.pipeline.migrations``). The per-destination delivery rows are kept
by ``DeliveryLedger`` (``StateStore.deliveries``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.errors import InvalidTransitionError, SeriesNotFoundError
from service.pipeline.deliveries import DeliveryLedger, reset_deliveries
from service.pipeline.migrations import upgrade_to_head
from service.pipeline.records import (
    NO_UPDATE,
    InstanceView,
    ReceivedInstance,
    SeriesUpdate,
    SeriesView,
    TransitionView,
)
from service.pipeline.schema import InstanceRow, SeriesRow, TransitionRow, create_state_engine
from service.pipeline.states import (
    REOPEN_ON_NEW_INSTANCE,
    WAITING_STATES,
    PendingStep,
    SeriesState,
    can_transition,
)


class StateStore:
    """All reads and writes of node state. Methods are safe to call from many processes."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_state_engine(database_url)
        upgrade_to_head(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.deliveries = DeliveryLedger(self._session)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()

    # -- writes -------------------------------------------------------------------------

    @staticmethod
    def _log(session: Session, uid: str, source: str, target: str, reason: str, now: float) -> None:
        session.add(
            TransitionRow(
                series_instance_uid=uid, from_state=source, to_state=target, reason=reason, at=now
            )
        )

    def record_instance(self, item: ReceivedInstance, now: float | None = None) -> SeriesView:
        """Record a durably stored instance and re-open its series if it was finished.

        A new SOP Instance re-opens a series in any processing state (the running job's
        final compare-and-set then fails and its output is discarded); an identical re-send
        re-opens only finished series, so sending a study twice makes it run twice with the
        same deterministic output UIDs.
        """
        now = time.time() if now is None else now
        with self._session() as session:
            series = session.get(SeriesRow, item.series_instance_uid, with_for_update=True)
            if series is None:
                series = SeriesRow(
                    series_instance_uid=item.series_instance_uid,
                    study_instance_uid=item.study_instance_uid,
                    calling_aet=item.calling_aet,
                    modality=item.modality,
                    series_description=item.series_description,
                    state=item.outcome_state.value,
                    state_reason=item.outcome_reason,
                    state_changed_at=now,
                    expected_instances=item.expected_instances,
                    received_instances=0,
                    first_received_at=now,
                    last_received_at=now,
                    attempts=0,
                    last_error="",
                    pending_step=PendingStep.NONE.value,
                    completeness_reason="",
                    algorithm="",
                )
                session.add(series)
                self._log(
                    session, item.series_instance_uid, "", series.state, item.outcome_reason, now
                )
            existing = session.get(InstanceRow, item.sop_instance_uid)
            is_new = existing is None
            if existing is None:
                session.add(
                    InstanceRow(
                        sop_instance_uid=item.sop_instance_uid,
                        series_instance_uid=item.series_instance_uid,
                        sop_class_uid=item.sop_class_uid,
                        spool_key=item.spool_key,
                        sha256=item.sha256,
                        size_bytes=item.size_bytes,
                        slice_position_mm=item.slice_position_mm,
                        received_at=now,
                    )
                )
                series.received_instances += 1
            else:
                existing.sha256 = item.sha256
                existing.size_bytes = item.size_bytes
                existing.slice_position_mm = item.slice_position_mm
                existing.received_at = now
            series.last_received_at = now
            series.calling_aet = item.calling_aet
            if item.expected_instances is not None:
                series.expected_instances = item.expected_instances
            state = SeriesState(series.state)
            reopen = state in REOPEN_ON_NEW_INSTANCE or (
                is_new
                and state
                in {
                    SeriesState.QUEUED,
                    SeriesState.PROCESSING,
                    SeriesState.WRITTEN,
                    SeriesState.SENDING,
                }
            )
            if reopen and item.outcome_state is SeriesState.RECEIVING:
                reason = f"{'new' if is_new else 're-sent'} instance after {state.value}"
                self._set_state(session, series, SeriesState.RECEIVING, reason, now)
                series.completeness_reason = ""
                series.attempts = 0
                series.last_error = ""
                series.lease_expires_at = None
                series.purged_at = None
                reset_deliveries(session, item.series_instance_uid)
            session.flush()
            return SeriesView.of(series)

    def _set_state(
        self, session: Session, series: SeriesRow, target: SeriesState, reason: str, now: float
    ) -> None:
        source = SeriesState(series.state)
        if not can_transition(source, target):
            raise InvalidTransitionError(
                f"series {series.series_instance_uid}: {source.value} -> {target.value} not allowed"
            )
        series.state = target.value
        series.state_reason = reason
        series.state_changed_at = now
        self._log(session, series.series_instance_uid, source.value, target.value, reason, now)

    def transition(
        self,
        series_uid: str,
        target: SeriesState,
        reason: str,
        *,
        expect: Iterable[SeriesState],
        lease_s: float | None = None,
        now: float | None = None,
        update: SeriesUpdate = NO_UPDATE,
    ) -> SeriesView | None:
        """Compare-and-set: move to ``target`` only if the series is in one of ``expect``.

        The lease is set to ``lease_s`` from now (or cleared), and ``update``'s columns are
        written in the same transaction.

        Returns the new snapshot, or None when the series was in another state (someone else
        got there first, or it was re-opened): the caller then does nothing.
        """
        now = time.time() if now is None else now
        expected = [state.value for state in expect]
        with self._session() as session:
            series = session.get(SeriesRow, series_uid, with_for_update=True)
            if series is None:
                raise SeriesNotFoundError(f"no series {series_uid}")
            if series.state not in expected:
                return None
            self._set_state(session, series, target, reason, now)
            series.lease_expires_at = None if lease_s is None else now + lease_s
            update.apply_to(series)
            session.flush()
            return SeriesView.of(series)

    def claim(
        self,
        series_uid: str,
        target: SeriesState,
        *,
        expect: Iterable[SeriesState],
        lease_s: float,
        reason: str,
        step: PendingStep,
        now: float | None = None,
    ) -> SeriesView | None:
        """Take a series into a leased state, also from ``target`` itself once its lease expired.

        This is what makes a killed worker harmless: its series stays PROCESSING with a lease
        that runs out, and the next delivery of the task claims it again. A FAILED series is
        only claimed by the step (``DENOISE`` or ``SEND``) that failed.
        """
        now = time.time() if now is None else now
        with self._session() as session:
            series = session.get(SeriesRow, series_uid, with_for_update=True)
            if series is None:
                raise SeriesNotFoundError(f"no series {series_uid}")
            state = SeriesState(series.state)
            lease_over = series.lease_expires_at is None or series.lease_expires_at <= now
            same_step = PendingStep(series.pending_step) is step
            claimable = state in set(expect) and (state is not SeriesState.FAILED or same_step)
            if not claimable and not (state is target and lease_over):
                return None
            self._set_state(session, series, target, reason, now)
            series.lease_expires_at = now + lease_s
            series.attempts = series.attempts + 1 if same_step else 1
            series.pending_step = step.value
            session.flush()
            return SeriesView.of(series)

    # -- reads --------------------------------------------------------------------------

    def get(self, series_uid: str) -> SeriesView:
        """Snapshot of one series."""
        with self._session() as session:
            series = session.get(SeriesRow, series_uid)
            if series is None:
                raise SeriesNotFoundError(f"no series {series_uid}")
            return SeriesView.of(series)

    def in_states(self, states: Iterable[SeriesState], limit: int = 1000) -> list[SeriesView]:
        """Series currently in any of ``states``, oldest change first."""
        wanted = [state.value for state in states]
        with self._session() as session:
            rows = session.scalars(
                select(SeriesRow)
                .where(SeriesRow.state.in_(wanted))
                .order_by(SeriesRow.state_changed_at)
                .limit(limit)
            )
            return [SeriesView.of(row) for row in rows]

    def recent(self, limit: int = 100) -> list[SeriesView]:
        """The most recently changed series, newest first (status page, CLI)."""
        with self._session() as session:
            rows = session.scalars(
                select(SeriesRow).order_by(SeriesRow.state_changed_at.desc()).limit(limit)
            )
            return [SeriesView.of(row) for row in rows]

    def purgeable(
        self, states: Iterable[SeriesState], before: float, limit: int = 100
    ) -> list[SeriesView]:
        """Series in ``states`` unchanged since ``before`` whose files are still on disk."""
        wanted = [state.value for state in states]
        with self._session() as session:
            rows = session.scalars(
                select(SeriesRow)
                .where(SeriesRow.state.in_(wanted))
                .where(SeriesRow.state_changed_at < before)
                .where(SeriesRow.purged_at.is_(None))
                .order_by(SeriesRow.state_changed_at)
                .limit(limit)
            )
            return [SeriesView.of(row) for row in rows]

    def count_by_state(self) -> dict[SeriesState, int]:
        """Number of series in each state."""
        with self._session() as session:
            rows = session.execute(
                select(SeriesRow.state, func.count()).group_by(SeriesRow.state)
            ).all()
        counts = dict.fromkeys(SeriesState, 0)
        for state, count in rows:
            counts[SeriesState(state)] = int(count)
        return counts

    def waiting_series_count(self) -> int:
        """Series between completeness and delivery (admission control limit)."""
        counts = self.count_by_state()
        return sum(counts[state] for state in WAITING_STATES)

    def instances(self, series_uid: str) -> list[InstanceView]:
        """Instances of a series, in slice-position order where known."""
        with self._session() as session:
            rows = session.scalars(
                select(InstanceRow).where(InstanceRow.series_instance_uid == series_uid)
            ).all()
            views = [
                InstanceView(
                    sop_instance_uid=row.sop_instance_uid,
                    sop_class_uid=row.sop_class_uid,
                    spool_key=row.spool_key,
                    sha256=row.sha256,
                    slice_position_mm=row.slice_position_mm,
                    received_at=row.received_at,
                )
                for row in rows
            ]
        return sorted(
            views, key=lambda v: (v.slice_position_mm is None, v.slice_position_mm or 0.0)
        )

    def history(self, series_uid: str) -> list[TransitionView]:
        """Audit trail of one series, oldest first."""
        with self._session() as session:
            rows = session.scalars(
                select(TransitionRow)
                .where(TransitionRow.series_instance_uid == series_uid)
                .order_by(TransitionRow.id)
            ).all()
            return [TransitionView(r.from_state, r.to_state, r.reason, r.at) for r in rows]
