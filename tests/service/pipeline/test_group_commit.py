"""Group commit over real associations: parallel C-STOREs share commits, and a failed commit
fails every instance of its batch before any Success, leaving no file behind."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import PositronEmissionTomographyImageStorage  # type: ignore[attr-defined]  # generated at import
from sqlalchemy import Connection, event
from sqlalchemy.exc import OperationalError
from support import ListenerNode, free_port, wait_for

from service.config import load_settings

ASSOCIATIONS = 8
BATCH_METRIC = "unipet_store_batch_instances"


class CommitGate:
    """Engine hook: counts commits of the state database; holds the first one back until
    every association has handed over its instance (in that batch, or staged for the next
    one), so one batch or two hold them all."""

    def __init__(self, node: ListenerNode, fail: bool = False) -> None:
        self.spool = node.spool.root
        self.fail = fail
        self.commits = 0
        self._lock = threading.Lock()
        event.listen(node.state.engine, "commit", self)

    def __call__(self, _connection: Connection) -> None:
        with self._lock:
            self.commits += 1
            first = self.commits == 1
        if first:
            wait_for(lambda: self._handed_over() >= ASSOCIATIONS, 30)
        if self.fail:
            raise OperationalError("COMMIT", None, sqlite3.OperationalError("disk I/O error"))

    def _handed_over(self) -> int:
        staged = list((self.spool / "tmp").glob("*.part"))
        published = list((self.spool / "incoming").rglob("*.dcm"))
        return len(staged) + len(published)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ListenerNode]:
    started = ListenerNode(
        load_settings(
            listener={
                "bind_address": "127.0.0.1",
                "port": free_port(),
                "max_associations_per_aet": ASSOCIATIONS,
            },
            spool={"path": str(tmp_path / "spool"), "min_free_bytes": 0, "max_used_fraction": 1.0},
        )
    )
    yield started
    started.stop()


def _copies(study_copy: Path, per_association: int) -> list[list[Dataset]]:
    """One new series per association, ``per_association`` instances each."""
    template = sorted((study_copy / "drf20").glob("*.dcm"))[:per_association]
    series: list[list[Dataset]] = []
    for _ in range(ASSOCIATIONS):
        study_uid, series_uid = generate_uid(), generate_uid()
        datasets: list[Dataset] = []
        for path in template:
            ds = dcmread(path)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            datasets.append(ds)
        series.append(datasets)
    return series


def _send(port: int, datasets: list[Dataset], statuses: list[int]) -> None:
    ae = AE(ae_title="SCANNER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(PositronEmissionTomographyImageStorage, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title="UNIPET")
    assert assoc.is_established
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            statuses.append(int(status.Status) if "Status" in status else -1)
    finally:
        assoc.release()


def _in_parallel(port: int, series: list[list[Dataset]]) -> list[int]:
    statuses: list[int] = []
    threads = [threading.Thread(target=_send, args=(port, s, statuses)) for s in series]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


def _batches() -> tuple[float, float]:
    """(commits, instances) the listener's batch histogram has seen in this process."""
    count = REGISTRY.get_sample_value(f"{BATCH_METRIC}_count") or 0.0
    total = REGISTRY.get_sample_value(f"{BATCH_METRIC}_sum") or 0.0
    return count, total


def test_parallel_associations_share_commits(node: ListenerNode, study_copy: Path) -> None:
    series = _copies(study_copy, per_association=4)
    instances = sum(len(s) for s in series)
    gate = CommitGate(node)
    before = _batches()
    statuses = _in_parallel(node.port, series)
    after = _batches()
    assert statuses == [0x0000] * instances
    # Eight first instances in at most two commits; never more commits than instances.
    assert gate.commits < instances
    assert after[0] - before[0] == gate.commits
    assert after[1] - before[1] == instances
    for datasets in series:
        uid = str(datasets[0].SeriesInstanceUID)
        assert node.state.get(uid).received_instances == len(datasets)
        for view in node.state.instances(uid):
            assert node.spool.path_of(view.spool_key).is_file()


def test_failed_commit_fails_its_whole_batch_and_keeps_no_file(
    node: ListenerNode, study_copy: Path
) -> None:
    series = _copies(study_copy, per_association=1)
    gate = CommitGate(node, fail=True)
    statuses = _in_parallel(node.port, series)
    assert statuses == [0x0110] * ASSOCIATIONS  # Processing Failure: the sender re-sends
    assert gate.commits < ASSOCIATIONS  # the failure reached a batch of several
    incoming = node.spool.root / "incoming"
    assert list(incoming.rglob("*.dcm")) == []
    assert list((node.spool.root / "tmp").iterdir()) == []
    assert node.state.recent() == []
    # The fault gone, the senders' re-sends are stored.
    gate.fail = False
    assert _in_parallel(node.port, series) == [0x0000] * ASSOCIATIONS
    assert len(list(incoming.rglob("*.dcm"))) == ASSOCIATIONS
