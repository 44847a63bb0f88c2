"""Tables of the state database (SQLAlchemy ORM) and how the engine is opened.

The tables are created and changed only by the migrations in ``service.pipeline.migrations``:
a change here needs a new revision there (a test compares the two). Times are seconds since
the epoch (UTC) as floats: portable between SQLite and PostgreSQL and trivially comparable
with ``time.time()`` in every process.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import (
    Connection,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random

#: How long a new connection keeps trying to switch a brand-new database to WAL (seconds).
WAL_SWITCH_TIMEOUT_S = 30.0


class _Base(DeclarativeBase):
    pass


#: The tables as the code expects them (the migrations' autogenerate target).
metadata = _Base.metadata

#: Base class of every table (typing of generic helpers).
Base = _Base


class SeriesRow(_Base):
    """One received series and where it is in its life."""

    __tablename__ = "series"

    series_instance_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    calling_aet: Mapped[str] = mapped_column(String(16))
    modality: Mapped[str] = mapped_column(String(16), default="")
    series_description: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(16), index=True)
    state_reason: Mapped[str] = mapped_column(Text, default="")
    state_changed_at: Mapped[float] = mapped_column(Float)
    expected_instances: Mapped[int | None] = mapped_column(Integer, nullable=True)
    received_instances: Mapped[int] = mapped_column(Integer, default=0)
    first_received_at: Mapped[float] = mapped_column(Float)
    last_received_at: Mapped[float] = mapped_column(Float)
    completeness_reason: Mapped[str] = mapped_column(Text, default="")
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    pending_step: Mapped[str] = mapped_column(String(16), default="")  # a PendingStep value
    output_series_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    output_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    output_instances: Mapped[int | None] = mapped_column(Integer, nullable=True)
    algorithm: Mapped[str] = mapped_column(String(128), default="")
    drf_estimate: Mapped[float | None] = mapped_column(Float, nullable=True)
    inference_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    written_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    done_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    purged_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class InstanceRow(_Base):
    """One received instance: where its bytes are and what we need without reading them."""

    __tablename__ = "instance"

    sop_instance_uid: Mapped[str] = mapped_column(String(64), primary_key=True)
    series_instance_uid: Mapped[str] = mapped_column(
        String(64), ForeignKey("series.series_instance_uid"), index=True
    )
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    spool_key: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    slice_position_mm: Mapped[float | None] = mapped_column(Float, nullable=True)
    received_at: Mapped[float] = mapped_column(Float)


class DeliveryRow(_Base):
    """Progress of one derived series towards one destination."""

    __tablename__ = "delivery"

    series_instance_uid: Mapped[str] = mapped_column(
        String(64), ForeignKey("series.series_instance_uid"), primary_key=True
    )
    destination: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="PENDING")  # a DeliveryState value
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class TransitionRow(_Base):
    """Audit trail: every state change of every series."""

    __tablename__ = "transition"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    series_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[float] = mapped_column(Float)


def sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    """Connect hook: WAL (readers never block the writer), durable commits, a busy wait.

    The driver's own transaction handling starts a transaction only before the first write,
    so a read-modify-write (a counter, "does this series exist yet?") would read outside it
    and lose updates between processes. It is switched off here and every transaction
    starts with BEGIN IMMEDIATE (``create_state_engine``): SQLite then serialises writers for
    the whole transaction, which is what ``SELECT ... FOR UPDATE`` means elsewhere.
    """
    dbapi_connection.isolation_level = None  # type: ignore[attr-defined]
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA busy_timeout=30000")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    """Put the database in WAL mode, waiting out processes that create it at the same moment.

    The switch needs an exclusive lock, and SQLite answers "database is locked" at once,
    without its busy wait, when another connection is reading the brand-new file (deadlock
    avoidance); several processes starting together hit that. Once the file is in WAL mode
    the switch is a no-op read, so the retry only ever runs on a new database.
    """
    for attempt in Retrying(
        retry=retry_if_exception(_is_locked),
        stop=stop_after_delay(WAL_SWITCH_TIMEOUT_S),
        wait=wait_random(0.01, 0.1),
        reraise=True,
    ):
        with attempt:
            cursor.execute("PRAGMA journal_mode=WAL")


def _sqlite_begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def create_state_engine(database_url: str, *, for_writes: bool = True) -> Engine:
    """Engine for the state database; SQLite gets WAL and a busy timeout for many processes.

    On SQLite, an engine ``for_writes`` starts every transaction with BEGIN IMMEDIATE (see
    ``sqlite_pragmas``); a read-only engine keeps deferred transactions, which in WAL mode
    read a consistent snapshot without waiting for writers.
    """
    if database_url.startswith("sqlite"):
        database = make_url(database_url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(database_url, connect_args={"timeout": 30})
        event.listen(engine, "connect", sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate if for_writes else _sqlite_begin)
    else:
        engine = create_engine(database_url, pool_pre_ping=True)
    return engine
