"""Retention: delete spool files of finished series once the retention period has passed.

Nothing is deleted before DONE plus the retention period. Only series
that need nobody's attention are purged: DONE (delivered) and IGNORED (not for us). REJECTED,
FAILED and DEAD series keep their files until an operator acts, and quarantined files are
never deleted automatically (they are evidence for the sender's vendor). Database rows and
their audit trail stay: the purge only removes pixel files and records when it did.
"""

from __future__ import annotations

import shutil

import structlog

from service.pipeline.records import SeriesUpdate
from service.pipeline.spool import Spool
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore

log = structlog.stdlib.get_logger(__name__)

PURGEABLE_STATES = (SeriesState.DONE, SeriesState.IGNORED)


def purge_expired(state: StateStore, spool: Spool, retention_days: float, now: float) -> list[str]:
    """Delete the incoming and outgoing files of finished series older than the retention.

    Returns the Series Instance UIDs purged in this pass (at most 100, oldest first).
    """
    before = now - retention_days * 86400.0
    purged: list[str] = []
    for series in state.purgeable(PURGEABLE_STATES, before):
        uid = series.series_instance_uid
        for instance in state.instances(uid):
            spool.path_of(instance.spool_key).unlink(missing_ok=True)
        if series.output_key:
            shutil.rmtree(spool.path_of(series.output_key), ignore_errors=True)
        changed = state.transition(
            uid,
            series.state,
            f"files purged after {retention_days:g} days of retention",
            expect=[series.state],
            now=now,
            update=SeriesUpdate(purged_at=now),
        )
        if changed is not None:
            purged.append(uid)
            log.info("series_purged", series_uid=uid, state=series.state.value)
    return purged
