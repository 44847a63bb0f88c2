"""Retention: finished series lose their files after the period; nothing else does."""

from __future__ import annotations

from pathlib import Path

from state_samples import advance, instance

from service.pipeline.retention import purge_expired
from service.pipeline.spool import Spool
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore

S = SeriesState
DAY = 86400.0


def stored_series(store: StateStore, spool: Spool, series: str, now: float) -> Path:
    key = spool.store_incoming("1.2", series, f"{series}.1", b"DICM bytes").key
    item = instance(f"{series}.1", series=series)
    store.record_instance(item.__class__(**{**item.__dict__, "spool_key": key}), now=now)
    return spool.path_of(key)


def test_done_series_files_go_after_retention_and_the_record_stays(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    done_file = stored_series(store, spool, "1.2.3", now=0.0)
    dead_file = stored_series(store, spool, "1.2.4", now=0.0)
    advance(store, "1.2.3", S.DONE, now=1.0)
    advance(store, "1.2.4", S.QUEUED, now=1.0)
    store.transition("1.2.4", S.DEAD, "retries spent", expect=[S.QUEUED], now=1.0)

    assert purge_expired(store, spool, retention_days=7, now=6 * DAY) == []
    assert done_file.exists()
    assert purge_expired(store, spool, retention_days=7, now=8 * DAY) == ["1.2.3"]
    assert not done_file.exists()
    assert dead_file.exists()  # DEAD needs an operator: never purged
    assert store.get("1.2.3").state is S.DONE
    assert store.get("1.2.3").purged_at == 8 * DAY
    assert purge_expired(store, spool, retention_days=7, now=9 * DAY) == []
