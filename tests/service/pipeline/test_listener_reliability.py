"""The listener under what real networks do: parallel associations, re-sends with other
content, a failing state database, a killed process, a busy port, idle sockets."""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import PositronEmissionTomographyImageStorage, Verification  # type: ignore[attr-defined]  # generated at import
from support import ListenerNode, free_port, port_open, wait_for

from service.config import NodeSettings, load_settings
from service.errors import NodeError
from service.pipeline.listener import close_associations, start_listener
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore

PET = PositronEmissionTomographyImageStorage


Node = ListenerNode


def _settings(tmp_path: Path, **listener: object) -> NodeSettings:
    return load_settings(
        listener={"bind_address": "127.0.0.1", "port": free_port(), **listener},
        spool={"path": str(tmp_path / "spool"), "min_free_bytes": 0, "max_used_fraction": 1.0},
    )


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    started = Node(_settings(tmp_path))
    yield started
    started.stop()


def _associate(
    port: int, calling_aet: str = "SCANNER", bind: str = "127.0.0.1", timeout_s: float = 20
) -> Association:
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
    ae.add_requested_context(PET, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    return ae.associate("127.0.0.1", port, ae_title="UNIPET", bind_address=(bind, 0))


def _send(port: int, datasets: list[Dataset], calling_aet: str, statuses: list[int]) -> None:
    assoc = _associate(port, calling_aet)
    assert assoc.is_established
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            statuses.append(int(status.Status) if "Status" in status else -1)
    finally:
        assoc.release()


def _in_parallel(jobs: list[tuple[int, list[Dataset], str]]) -> list[int]:
    statuses: list[int] = []
    threads = [threading.Thread(target=_send, args=(*job, statuses)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return statuses


def _series(study_copy: Path) -> list[Dataset]:
    return [dcmread(p) for p in sorted((study_copy / "drf20").glob("*.dcm"))]


def test_one_series_over_three_parallel_associations_is_counted_whole(
    node: Node, study_copy: Path
) -> None:
    datasets = _series(study_copy)
    thirds = [datasets[i::3] for i in range(3)]
    statuses = _in_parallel([(node.port, part, "SCANNER") for part in thirds])
    assert statuses == [0x0000] * len(datasets)
    uid = str(datasets[0].SeriesInstanceUID)
    assert node.state.get(uid).received_instances == len(datasets)
    assert len(node.state.instances(uid)) == len(datasets)


def test_same_series_from_two_aes_at_once_is_accepted_by_both(node: Node, study_copy: Path) -> None:
    datasets = _series(study_copy)
    statuses = _in_parallel([(node.port, datasets, "SCANNER"), (node.port, datasets, "PACS")])
    assert statuses == [0x0000] * (2 * len(datasets))
    assert node.state.get(str(datasets[0].SeriesInstanceUID)).received_instances == len(datasets)


def test_same_uid_with_other_content_keeps_the_first_copy(node: Node, study_copy: Path) -> None:
    first = _series(study_copy)[0]
    changed = dcmread(sorted((study_copy / "drf20").glob("*.dcm"))[0])
    changed.RescaleSlope = float(changed.RescaleSlope) * 2
    statuses = _in_parallel([(node.port, [first], "SCANNER")])
    statuses += _in_parallel([(node.port, [changed], "SCANNER")])
    assert statuses == [0x0000, 0x0000]
    uid = str(first.SeriesInstanceUID)
    [kept] = node.state.instances(uid)
    assert float(dcmread(node.spool.path_of(kept.spool_key)).RescaleSlope) == float(
        first.RescaleSlope
    )
    [record] = node.spool.quarantined()
    assert "different content" in record["reason"]
    assert any("first copy kept" in entry.reason for entry in node.state.history(uid))


def test_state_database_error_fails_the_store_and_leaves_no_file(
    node: Node, study_copy: Path
) -> None:
    with sqlite3.connect(node.settings.database_url.removeprefix("sqlite:///")) as db:
        db.execute("DROP TABLE instance")
    statuses = _in_parallel([(node.port, _series(study_copy)[:1], "SCANNER")])
    assert statuses == [0x0110]
    assert list((node.spool.root / "incoming").rglob("*.dcm")) == []


def _send_until_cut(port: int, datasets: list[Dataset], acked: list[str]) -> None:
    """Send until the node goes away; every Success adds its SOP Instance UID to ``acked``.

    Short timeouts: a request in flight when the node dies may wait for its response until
    the DIMSE timeout instead of seeing the socket close.
    """
    assoc = _associate(port, timeout_s=5)
    if not assoc.is_established:
        return
    try:
        for ds in datasets:
            try:
                status = assoc.send_c_store(ds)
            except (RuntimeError, ValueError):
                return
            if int(status.get("Status", -1)) == 0x0000:
                acked.append(str(ds.SOPInstanceUID))
            if not assoc.is_established:
                return
    finally:
        if assoc.is_established:
            assoc.release()


def test_acknowledged_instances_survive_kill_9_right_after_success(
    tmp_path: Path, study_copy: Path
) -> None:
    """The Success status is sent only once the file, its folder entry and its row are on
    disk: a listener process killed the moment it answers has lost nothing it acknowledged."""
    settings = load_settings(
        listener={"bind_address": "127.0.0.1", "port": free_port()},
        spool={"path": str(tmp_path / "spool"), "min_free_bytes": 0, "max_used_fraction": 1.0},
        queue={"broker_url": f"redis+socket://{tmp_path}/no-broker.sock", "embedded_redis": False},
        completeness={"quiet_period_s": 3600, "forced_timeout_s": 7200},
    )
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    listener = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "listener", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    datasets = _series(study_copy)
    acked: list[str] = []
    senders = [
        threading.Thread(target=_send_until_cut, args=(settings.listener.port, part, acked))
        for part in (datasets[i::3] for i in range(3))
    ]
    try:
        assert wait_for(lambda: port_open(settings.listener.port), 60, 0.1)
        for sender in senders:
            sender.start()
        assert wait_for(lambda: len(acked) >= len(datasets) // 2, 60, 0.001)
        listener.kill()  # SIGKILL: no shutdown code runs
        listener.wait(timeout=10)
        for sender in senders:
            sender.join(timeout=60)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait(timeout=10)
    assert len(acked) < len(datasets)  # killed mid-series, not after it
    state = StateStore(settings.database_url)
    recorded = {i.sop_instance_uid: i for i in state.instances(str(datasets[0].SeriesInstanceUID))}
    spool = Spool(settings.spool.path)
    state.close()
    for sop_uid in acked:
        stored = recorded[sop_uid]
        on_disk = spool.path_of(stored.spool_key).read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == stored.sha256


def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = _settings(tmp_path, port=taken.getsockname()[1])
        with pytest.raises(NodeError, match=r"listener\.port: cannot listen on 127\.0\.0\.1"):
            start_listener(settings, Spool(settings.spool.path), StateStore(settings.database_url))
        config = tmp_path / "node.yaml"
        config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
        result = subprocess.run(
            [sys.executable, "-m", "service.cli", "listener", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "listener.port: cannot listen" in result.stderr


def test_idle_connections_neither_lock_senders_out_nor_stay_open(tmp_path: Path) -> None:
    node = Node(_settings(tmp_path, max_associations=20, acse_timeout_s=1.0))
    idle: list[socket.socket] = []
    try:
        for _ in range(20):
            sock = socket.socket()
            sock.bind(("127.0.0.2", 0))  # another host on the loopback network
            sock.connect(("127.0.0.1", node.port))
            sock.settimeout(10)
            idle.append(sock)
        assoc = _associate(node.port)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        for sock in idle:
            assert sock.recv(1) == b""  # closed by the node, not by us
    finally:
        for sock in idle:
            sock.close()
        node.stop()


def test_idle_connection_slots_come_back(tmp_path: Path) -> None:
    node = Node(_settings(tmp_path, max_associations=2, acse_timeout_s=0.5))
    try:
        idle = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(2)]
        assert wait_for(lambda: _associate(node.port).is_established, 10, interval_s=0.2)
        for sock in idle:
            sock.close()
    finally:
        node.stop()


def test_an_association_left_open_at_stop_is_aborted_after_the_drain(tmp_path: Path) -> None:
    """pynetdicom's shutdown leaves open associations running, and their threads keep the
    process alive; after a short drain the listener aborts them (the sender re-sends)."""
    started = Node(_settings(tmp_path, acse_timeout_s=60.0, network_timeout_s=60.0))
    try:
        idle = _associate(started.port)
        assert idle.is_established
        started.server.shutdown()
        assert close_associations(started.server, drain_s=0.2) == 1
        assert wait_for(lambda: not started.server.active_associations, 10)
        assert wait_for(lambda: idle.is_aborted, 10), "the sender is told: A-ABORT"
    finally:
        started.state.close()


def test_an_association_that_ends_within_the_drain_is_not_aborted(tmp_path: Path) -> None:
    started = Node(_settings(tmp_path))
    try:
        sending = _associate(started.port)
        assert sending.is_established
        started.server.shutdown()
        threading.Timer(0.3, sending.release).start()
        assert close_associations(started.server, drain_s=20) == 0
        assert sending.is_released
    finally:
        started.state.close()
