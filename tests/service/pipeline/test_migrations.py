"""Schema migrations: an old database is adopted with its rows, models and migrations agree."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from service.pipeline.deliveries import DeliveryState
from service.pipeline.migrations import (
    BASELINE_REVISION,
    alembic_config,
    current_revision,
    head_revision,
)
from service.pipeline.schema import create_state_engine, metadata
from service.pipeline.states import PendingStep, SeriesState
from service.pipeline.store import StateStore

#: The tables exactly as ``metadata.create_all`` made them before migrations existed
#: (SQLite's own record of the DDL, read back from a database of that time).
PRE_MIGRATION_DDL = """
CREATE TABLE series (
    series_instance_uid VARCHAR(64) NOT NULL,
    study_instance_uid VARCHAR(64) NOT NULL,
    calling_aet VARCHAR(16) NOT NULL,
    modality VARCHAR(16) NOT NULL,
    series_description VARCHAR(64) NOT NULL,
    state VARCHAR(16) NOT NULL,
    state_reason TEXT NOT NULL,
    state_changed_at FLOAT NOT NULL,
    expected_instances INTEGER,
    received_instances INTEGER NOT NULL,
    first_received_at FLOAT NOT NULL,
    last_received_at FLOAT NOT NULL,
    completeness_reason TEXT NOT NULL,
    completed_at FLOAT,
    lease_expires_at FLOAT,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    pending_step VARCHAR(16) NOT NULL,
    output_series_uid VARCHAR(64),
    output_key TEXT,
    output_instances INTEGER,
    algorithm VARCHAR(128) NOT NULL,
    drf_estimate FLOAT,
    inference_seconds FLOAT,
    written_at FLOAT,
    done_at FLOAT,
    purged_at FLOAT,
    PRIMARY KEY (series_instance_uid)
);
CREATE INDEX ix_series_study_instance_uid ON series (study_instance_uid);
CREATE INDEX ix_series_state ON series (state);
CREATE TABLE transition (
    id INTEGER NOT NULL,
    series_instance_uid VARCHAR(64) NOT NULL,
    from_state VARCHAR(16) NOT NULL,
    to_state VARCHAR(16) NOT NULL,
    reason TEXT NOT NULL,
    at FLOAT NOT NULL,
    PRIMARY KEY (id)
);
CREATE INDEX ix_transition_series_instance_uid ON transition (series_instance_uid);
CREATE TABLE instance (
    sop_instance_uid VARCHAR(64) NOT NULL,
    series_instance_uid VARCHAR(64) NOT NULL,
    sop_class_uid VARCHAR(64) NOT NULL,
    spool_key TEXT NOT NULL,
    sha256 VARCHAR(64) NOT NULL,
    size_bytes INTEGER NOT NULL,
    slice_position_mm FLOAT,
    received_at FLOAT NOT NULL,
    PRIMARY KEY (sop_instance_uid),
    FOREIGN KEY(series_instance_uid) REFERENCES series (series_instance_uid)
);
CREATE INDEX ix_instance_series_instance_uid ON instance (series_instance_uid);
CREATE TABLE delivery (
    series_instance_uid VARCHAR(64) NOT NULL,
    destination VARCHAR(64) NOT NULL,
    state VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    sent_at FLOAT,
    PRIMARY KEY (series_instance_uid, destination),
    FOREIGN KEY(series_instance_uid) REFERENCES series (series_instance_uid)
);
"""

PET = "1.2.840.10008.5.1.4.1.1.128"


def _series_row(uid: str, state: str, step: str, output: str | None) -> tuple[object, ...]:
    return (
        uid, "1.2", "SCANNER", "PT", "PET WB", state, "old reason", 300.0, 2, 2, 100.0, 110.0,
        "instance count: 2 of 2", 120.0, None, 1, "", step, output,
        f"outgoing/1.2/{uid}" if output else None, 2 if output else None,
        "UniPET 0.1.0" if output else "", 18.5 if output else None, 3.25 if output else None,
        200.0 if output else None, 300.0 if state == "DONE" else None, None,
    )  # fmt: skip


def make_pre_migration_database(path: Path) -> None:
    """A state database as the node wrote it before migrations: WAL, tables, rows."""
    with closing(sqlite3.connect(path)) as raw, raw:
        raw.execute("PRAGMA journal_mode=WAL")
        raw.executescript(PRE_MIGRATION_DDL)
        raw.executemany(
            f"INSERT INTO series VALUES ({', '.join('?' * 27)})",
            [
                _series_row("1.2.3", "DONE", "", "1.2.9"),
                _series_row("1.2.4", "DEAD", "send", "1.2.8"),
            ],
        )
        raw.executemany(
            "INSERT INTO instance VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (f"1.2.3.{i}", "1.2.3", PET, f"incoming/1.2/1.2.3/{i}.dcm", "a" * 64, 100, z, 105.0)
                for i, z in ((1, 0.0), (2, 2.0))
            ],
        )
        raw.executemany(
            "INSERT INTO delivery VALUES (?, ?, ?, ?, ?, ?)",
            [
                ("1.2.3", "pacs", "SENT", 1, "", 290.0),
                ("1.2.4", "pacs", "FAILED", 3, "association rejected", None),
            ],
        )
        raw.executemany(
            "INSERT INTO transition (series_instance_uid, from_state, to_state, reason, at) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                ("1.2.3", "", "RECEIVING", "eligible PET", 100.0),
                ("1.2.3", "RECEIVING", "COMPLETE", "instance count: 2 of 2", 120.0),
                ("1.2.3", "SENDING", "DONE", "stored at pacs", 300.0),
            ],
        )
    with closing(sqlite3.connect(path)) as raw, raw:
        assert "alembic_version" not in {
            name for (name,) in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }


def schema_differences(engine: Engine) -> list[object]:
    """What ``alembic revision --autogenerate`` would write against this database."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def test_pre_migration_database_is_adopted_with_every_row(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    make_pre_migration_database(path)
    store = StateStore(f"sqlite:///{path}")
    with store.engine.connect() as connection:
        assert current_revision(connection) == head_revision()
    done, dead = store.get("1.2.3"), store.get("1.2.4")
    assert (done.state, done.pending_step, done.output_series_uid) == (
        SeriesState.DONE,
        PendingStep.NONE,
        "1.2.9",
    )
    assert (done.drf_estimate, done.inference_seconds, done.done_at) == (18.5, 3.25, 300.0)
    assert (dead.state, dead.pending_step) == (SeriesState.DEAD, PendingStep.SEND)
    assert [i.sop_instance_uid for i in store.instances("1.2.3")] == ["1.2.3.1", "1.2.3.2"]
    assert store.deliveries.of("1.2.3")["pacs"].state is DeliveryState.SENT
    failed = store.deliveries.of("1.2.4")["pacs"]
    assert (failed.state, failed.attempts, failed.last_error) == (
        DeliveryState.FAILED,
        3,
        "association rejected",
    )
    assert [h.to_state for h in store.history("1.2.3")] == ["RECEIVING", "COMPLETE", "DONE"]
    assert schema_differences(store.engine) == []
    # The adopted database keeps working: the audit trail grows from where it was.
    assert store.transition("1.2.4", SeriesState.WRITTEN, "replayed", expect=[SeriesState.DEAD])
    assert store.history("1.2.4")[-1].from_state == "DEAD"
    store.close()
    with closing(sqlite3.connect(path)) as raw, raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_new_database_is_created_at_head_and_matches_the_models(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    store = StateStore(f"sqlite:///{path}")
    with store.engine.connect() as connection:
        assert current_revision(connection) == head_revision()
        assert set(inspect(connection).get_table_names()) == {
            "alembic_version",
            "series",
            "instance",
            "delivery",
            "transition",
        }
    assert schema_differences(store.engine) == []
    store.close()
    with closing(sqlite3.connect(path)) as raw, raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_reopening_a_database_at_head_keeps_its_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore(url).close()
    with closing(sqlite3.connect(tmp_path / "state.db")) as raw, raw:
        raw.execute(
            f"INSERT INTO series VALUES ({', '.join('?' * 27)})",
            _series_row("1.2.5", "DONE", "", "1.2.7"),
        )
    again = StateStore(url)
    assert again.get("1.2.5").state is SeriesState.DONE
    with again.engine.connect() as connection:
        assert current_revision(connection) == head_revision()
    again.close()


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    """Listener, workers and web start together: the upgrade runs once, under a lock."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_store() -> None:
        start.wait(timeout=10)
        try:
            StateStore(url).close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    engine = create_state_engine(url)
    with engine.connect() as connection:
        assert current_revision(connection) == head_revision()
    engine.dispose()


def test_every_revision_downgrades_to_nothing_and_upgrades_again(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    with store.engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
        assert set(inspect(connection).get_table_names()) == {"alembic_version"}
        command.upgrade(alembic_config(connection), "head")
    assert schema_differences(store.engine) == []
    store.close()


def test_baseline_is_the_first_revision() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_base() == BASELINE_REVISION
    assert [r.revision for r in script.walk_revisions()][-1] == BASELINE_REVISION
