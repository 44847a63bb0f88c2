"""Schema migrations of the state database (Alembic), applied whenever a store opens it.

Every process (listener, workers, web, CLI) may open the database first, so the upgrade is
serialised by the database itself: SQLite's write lock (``BEGIN IMMEDIATE``; SQLite runs DDL
inside the transaction, so a failed upgrade leaves the old schema whole) or a PostgreSQL
advisory lock. A database made before migrations existed (tables, no ``alembic_version``) is
exactly revision ``0001`` and is stamped as such, keeping every row.

A schema change is a change to ``service/pipeline/schema.py`` plus a new revision, drafted
against a database at head and then read and tidied by hand::

    alembic -c service/pipeline/migrations/alembic.ini -x url=sqlite:////tmp/dev.db upgrade head
    alembic -c service/pipeline/migrations/alembic.ini -x url=sqlite:////tmp/dev.db \\
        revision --autogenerate --rev-id 0002 -m "what changes"
"""

from __future__ import annotations

import functools
from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.pool import NullPool

from service.pipeline.schema import sqlite_pragmas

log = structlog.stdlib.get_logger(__name__)

#: Where env.py and versions/ live (inside the installed package).
MIGRATIONS_DIR = Path(__file__).resolve().parent

#: The schema as the node created it before migrations existed.
BASELINE_REVISION = "0001"

#: PostgreSQL advisory lock key held while migrating ("UNIP").
_PG_LOCK_KEY = 0x554E4950


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config built in code (no alembic.ini at run time), bound to ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@functools.cache
def head_revision() -> str:
    """The newest revision shipped with this code (read once per process)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration revisions in {MIGRATIONS_DIR / 'versions'}")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision a database is at, or None when it has never been migrated."""
    if "alembic_version" not in inspect(connection).get_table_names():
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade_to_head(engine: Engine) -> None:
    """Bring the database behind ``engine`` to the newest revision (a no-op when it is there).

    Raises:
        sqlalchemy.exc.OperationalError: the database is unreachable, or locked for longer
            than the busy timeout.
    """
    head = head_revision()
    with engine.connect() as probe:
        if current_revision(probe) == head:
            return
    migrator = _locking_engine(engine)
    try:
        with migrator.begin() as connection:
            _lock(connection)
            _upgrade(connection, head)
    finally:
        if migrator is not engine:
            migrator.dispose()


def _upgrade(connection: Connection, head: str) -> None:
    before = current_revision(connection)
    if before == head:
        return  # another process migrated while we waited for the lock
    config = alembic_config(connection)
    if before is None and "series" in inspect(connection).get_table_names():
        command.stamp(config, BASELINE_REVISION)
        log.info("state_database_adopted", revision=BASELINE_REVISION)
        before = BASELINE_REVISION
    command.upgrade(config, "head")
    log.info("state_database_migrated", from_revision=before, to_revision=head)


def _locking_engine(engine: Engine) -> Engine:
    """An engine whose transactions take SQLite's write lock at BEGIN, not at first write.

    pysqlite begins a transaction only before the first INSERT/UPDATE/DELETE, so DDL would
    run outside it; driving BEGIN ourselves makes the whole upgrade one transaction that a
    second process waits for (busy timeout).
    """
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return engine
    migrator = create_engine(url, connect_args={"timeout": 30}, poolclass=NullPool)

    def connect(dbapi_connection: object, record: object) -> None:
        sqlite_pragmas(dbapi_connection, record)
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]

    def begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(migrator, "connect", connect)
    event.listen(migrator, "begin", begin)
    return migrator


def _lock(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
