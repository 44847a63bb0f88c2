"""The delivery ledger: how far one derived series got towards each destination.

One row per (series, destination). A send job skips destinations already SENT, so a retry
after a partial failure only sends where the series is still missing and no peer receives
the same derived series twice. Re-opening a series (new instances arrived) resets its rows to
PENDING in the same transaction, because the next output replaces the one delivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.pipeline.schema import DeliveryRow


class DeliveryState(StrEnum):
    """Where one derived series stands with one destination."""

    PENDING = "PENDING"  # not tried yet, or re-opened since
    SENT = "SENT"  # every instance stored at the destination
    FAILED = "FAILED"  # the last attempt failed; the next send job tries again


@dataclass(frozen=True)
class DeliveryView:
    """A read-only snapshot of one delivery row."""

    destination: str
    state: DeliveryState
    attempts: int
    last_error: str
    sent_at: float | None

    @classmethod
    def of(cls, row: DeliveryRow) -> DeliveryView:
        """Snapshot an ORM row, coercing its state to ``DeliveryState``."""
        return cls(
            destination=row.destination,
            state=DeliveryState(row.state),
            attempts=row.attempts,
            last_error=row.last_error,
            sent_at=row.sent_at,
        )


def reset_deliveries(session: Session, series_uid: str) -> None:
    """Mark every destination of a series PENDING again (inside the caller's transaction)."""
    session.execute(
        update(DeliveryRow)
        .where(DeliveryRow.series_instance_uid == series_uid)
        .values(state=DeliveryState.PENDING.value, attempts=0)
    )


class DeliveryLedger:
    """Reads and writes of delivery rows; shares the state store's engine and sessions."""

    def __init__(self, session: Callable[[], AbstractContextManager[Session]]) -> None:
        self._session = session

    def ensure(self, series_uid: str, destinations: Iterable[str]) -> None:
        """Create the PENDING rows of a series for ``destinations`` (idempotent)."""
        with self._session() as session:
            for name in destinations:
                if session.get(DeliveryRow, (series_uid, name)) is None:
                    session.add(
                        DeliveryRow(
                            series_instance_uid=series_uid,
                            destination=name,
                            state=DeliveryState.PENDING.value,
                        )
                    )

    def mark(
        self,
        series_uid: str,
        destination: str,
        state: DeliveryState,
        error: str = "",
        now: float | None = None,
    ) -> None:
        """Record the outcome of one send attempt to one destination."""
        now = time.time() if now is None else now
        with self._session() as session:
            row = session.get(DeliveryRow, (series_uid, destination), with_for_update=True)
            if row is None:
                row = DeliveryRow(series_instance_uid=series_uid, destination=destination)
                session.add(row)
            row.state = state.value
            row.attempts = (row.attempts or 0) + 1
            row.last_error = error
            if state is DeliveryState.SENT:
                row.sent_at = now

    def of(self, series_uid: str) -> dict[str, DeliveryView]:
        """Destination name -> its delivery, for one series."""
        with self._session() as session:
            rows = session.scalars(
                select(DeliveryRow).where(DeliveryRow.series_instance_uid == series_uid)
            ).all()
            return {row.destination: DeliveryView.of(row) for row in rows}

    def sent_to(self, series_uid: str) -> set[str]:
        """Destinations that already hold the derived series."""
        return {
            name for name, view in self.of(series_uid).items() if view.state is DeliveryState.SENT
        }
