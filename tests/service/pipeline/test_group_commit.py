"""Group commit: parallel C-STOREs share commits, a failed commit fails every instance of its
batch before any Success and leaves no file behind, and two copies of one instance in one
batch are told apart by content."""

from __future__ import annotations

import dataclasses
import hashlib
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
from state_samples import instance
from support import ListenerNode, free_port, wait_for

from service.config import load_settings
from service.pipeline.group_commit import GroupCommit, Receipt
from service.pipeline.records import ReceivedInstance
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore

ASSOCIATIONS = 8
BATCH_METRIC = "unipet_store_batch_instances"


class CommitGate:
    """Engine hook: counts commits of the state database; holds the first one back until
    ``expected`` instances are handed over (published in that batch, or staged for the next
    one), so that one batch or two hold them all."""

    def __init__(
        self, state: StateStore, spool: Spool, expected: int = ASSOCIATIONS, fail: bool = False
    ) -> None:
        self.spool = spool.root
        self.expected = expected
        self.fail = fail
        self.commits = 0
        self.entered = threading.Event()  # the writer is inside its first commit
        self._lock = threading.Lock()
        event.listen(state.engine, "commit", self)

    def __call__(self, _connection: Connection) -> None:
        with self._lock:
            self.commits += 1
            first = self.commits == 1
        if first:
            self.entered.set()
            wait_for(lambda: self._handed_over() >= self.expected, 30)
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
    gate = CommitGate(node.state, node.spool)
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
    gate = CommitGate(node.state, node.spool, fail=True)
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


def _received(spool: Spool, sop_uid: str, data: bytes) -> ReceivedInstance:
    return dataclasses.replace(
        instance(sop_uid),
        spool_key=spool.incoming_key("1.2", "1.2.3", sop_uid),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )


def _submit_in_one_batch(
    tmp_path: Path, copies: list[bytes]
) -> tuple[Spool, StateStore, list[Receipt]]:
    """A first instance holds the writer in its commit while ``copies`` of instance 1.2.3.9
    are submitted at once: they share the next batch."""
    spool = Spool(tmp_path / "spool")
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    commits = GroupCommit(spool, state, wait_timeout_s=60)
    gate = CommitGate(state, spool, expected=1 + len(copies))
    receipts: list[Receipt] = []

    def submit(sop_uid: str, data: bytes) -> None:
        receipts.append(commits.submit(_received(spool, sop_uid, data), data))

    first = threading.Thread(target=submit, args=("1.2.3.1", b"first"))
    first.start()
    assert gate.entered.wait(timeout=30)
    threads = [threading.Thread(target=submit, args=("1.2.3.9", data)) for data in copies]
    for thread in threads:
        thread.start()
    for thread in [first, *threads]:
        thread.join(timeout=60)
    assert list((spool.root / "tmp").iterdir()) == []
    return spool, state, receipts


def test_other_content_in_the_same_batch_keeps_the_first_copy(tmp_path: Path) -> None:
    spool, state, receipts = _submit_in_one_batch(tmp_path, [b"copy A", b"copy B"])
    kept = state.instance_sha256("1.2.3.9")
    assert kept in {hashlib.sha256(b"copy A").hexdigest(), hashlib.sha256(b"copy B").hexdigest()}
    assert sorted(r.first_copy_sha256 or "" for r in receipts) == ["", "", kept]
    on_disk = spool.incoming_path("1.2", "1.2.3", "1.2.3.9").read_bytes()
    assert hashlib.sha256(on_disk).hexdigest() == kept
    state.close()


def test_identical_copies_in_the_same_batch_are_one_instance(tmp_path: Path) -> None:
    spool, state, receipts = _submit_in_one_batch(tmp_path, [b"same", b"same"])
    assert receipts == [Receipt()] * 3
    assert spool.incoming_path("1.2", "1.2.3", "1.2.3.9").read_bytes() == b"same"
    assert state.get("1.2.3").received_instances == 2
    state.close()
