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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from service.errors import NodeError, SeriesNotFoundError
from service.pipeline.deliveries import DeliveryLedger
from service.pipeline.history import log_transition, set_state
from service.pipeline.intake import record_arrival, record_arrivals
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
    WAITING_STATES,
    PendingStep,
    SeriesState,
)


def _record_alone(session: Session, item: ReceivedInstance, now: float) -> Exception | None:
    """Record one instance of a batch in its own savepoint; the error that undid it, if any."""
    try:
        with session.begin_nested():
            record_arrival(session, item, now)
    except (SQLAlchemyError, NodeError) as exc:
        return exc
    return None


class StateStore:
    """All reads and writes of node state. Methods are safe to call from many processes."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_state_engine(database_url)
        upgrade_to_head(self.engine)
        # Reads (status page, completeness polls) need no write lock; on SQLite they get
        # their own engine whose transactions do not start with BEGIN IMMEDIATE.
        self.read_engine = create_state_engine(database_url, for_writes=False)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
        self.deliveries = DeliveryLedger(self._session)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        with self._read_sessions.begin() as session:
            yield session

    def close(self) -> None:
        """Release database connections."""
        self.engine.dispose()
        self.read_engine.dispose()

    # -- writes -------------------------------------------------------------------------

    def record_instance(self, item: ReceivedInstance, now: float | None = None) -> SeriesView:
        """Record a durably stored instance and re-open its series if it was finished.

        Safe against parallel associations sending one series (modalities and PACS do):
        the series and instance rows are inserted with ``ON CONFLICT DO NOTHING`` and the
        received count is recounted from the instance rows in the same (serialised)
        transaction, so no update is lost and a re-send repairs any count. A re-sent
        instance keeps its first copy's hash and size (the listener refuses to overwrite
        other content, see ``instance_sha256``).

        A new SOP Instance re-opens a series in any processing state (the running job's
        final compare-and-set then fails and its output is discarded); an identical re-send
        re-opens only finished series, so sending a study twice makes it run twice with the
        same deterministic output UIDs. An instance REJECTED by the header check rejects its
        whole series with that instance's reason: part of a volume cannot be denoised.
        """
        now = time.time() if now is None else now
        with self._session() as session:
            series = record_arrival(session, item, now)
            session.flush()
            return SeriesView.of(series)

    def record_instances(
        self, items: Sequence[ReceivedInstance], now: float | None = None
    ) -> list[Exception | None]:
        """Record a batch of durably stored instances in one transaction: one commit, one fsync.

        Each instance is recorded as ``record_instance`` would, in arrival order. Should one
        of them fail (a value the database refuses, say), the batch is recorded again with
        each instance in its own savepoint, so that one is rolled back alone and the others
        still commit. Returns, per instance, None when it is recorded or the error that
        rolled it back. An error of the transaction itself (BEGIN or COMMIT: lock timeout,
        I/O error, full disk) is raised, and then nothing of the batch is recorded.
        """
        now = time.time() if now is None else now
        with self._session() as session:
            session.connection()  # BEGIN now: its failure is the whole batch's, not an item's
            try:
                with session.begin_nested():
                    record_arrivals(session, items, now)
            except (SQLAlchemyError, NodeError):
                return [_record_alone(session, item, now) for item in items]
            return [None] * len(items)

    def note(self, series_uid: str, reason: str, now: float | None = None) -> None:
        """Add an audit-trail entry without changing state (e.g. a refused overwrite)."""
        now = time.time() if now is None else now
        with self._session() as session:
            series = session.get(SeriesRow, series_uid)
            state = "" if series is None else series.state
            log_transition(session, series_uid, state, state, reason, now)

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
            set_state(session, series, target, reason, now)
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
            set_state(session, series, target, reason, now)
            series.lease_expires_at = now + lease_s
            series.attempts = series.attempts + 1 if same_step else 1
            series.pending_step = step.value
            session.flush()
            return SeriesView.of(series)

    def renew_lease(
        self,
        series_uid: str,
        state: SeriesState,
        step: PendingStep,
        *,
        lease_s: float,
        now: float | None = None,
    ) -> bool:
        """Heartbeat of a running job: push its lease on while it still holds the series.

        Returns False when the series left ``state``/``step`` (re-opened, or the lease ran
        out and someone else claimed it): the job's result will then be discarded.
        """
        now = time.time() if now is None else now
        with self._session() as session:
            result = session.execute(
                update(SeriesRow)
                .where(SeriesRow.series_instance_uid == series_uid)
                .where(SeriesRow.state == state.value)
                .where(SeriesRow.pending_step == step.value)
                .values(lease_expires_at=now + lease_s)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    # -- reads --------------------------------------------------------------------------

    def get(self, series_uid: str) -> SeriesView:
        """Snapshot of one series."""
        with self._reading() as session:
            series = session.get(SeriesRow, series_uid)
            if series is None:
                raise SeriesNotFoundError(f"no series {series_uid}")
            return SeriesView.of(series)

    def in_states(self, states: Iterable[SeriesState], limit: int = 1000) -> list[SeriesView]:
        """Series currently in any of ``states``, oldest change first."""
        wanted = [state.value for state in states]
        with self._reading() as session:
            rows = session.scalars(
                select(SeriesRow)
                .where(SeriesRow.state.in_(wanted))
                .order_by(SeriesRow.state_changed_at)
                .limit(limit)
            )
            return [SeriesView.of(row) for row in rows]

    def recent(self, limit: int = 100) -> list[SeriesView]:
        """The most recently changed series, newest first (status page, CLI)."""
        with self._reading() as session:
            rows = session.scalars(
                select(SeriesRow).order_by(SeriesRow.state_changed_at.desc()).limit(limit)
            )
            return [SeriesView.of(row) for row in rows]

    def purgeable(
        self, states: Iterable[SeriesState], before: float, limit: int = 100
    ) -> list[SeriesView]:
        """Series in ``states`` unchanged since ``before`` whose files are still on disk."""
        wanted = [state.value for state in states]
        with self._reading() as session:
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
        with self._reading() as session:
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
        with self._reading() as session:
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

    def instance_sha256(self, sop_instance_uid: str) -> str | None:
        """SHA-256 of the first stored copy of an instance, or None if never received."""
        with self._reading() as session:
            return session.scalar(
                select(InstanceRow.sha256).where(InstanceRow.sop_instance_uid == sop_instance_uid)
            )

    def history(self, series_uid: str) -> list[TransitionView]:
        """Audit trail of one series, oldest first."""
        with self._reading() as session:
            rows = session.scalars(
                select(TransitionRow)
                .where(TransitionRow.series_instance_uid == series_uid)
                .order_by(TransitionRow.id)
            ).all()
            return [TransitionView(r.from_state, r.to_state, r.reason, r.at) for r in rows]
