"""The C-STORE/C-ECHO listener over real sockets with a pynetdicom SCU."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # generated at import
    CTImageStorage,
    PositronEmissionTomographyImageStorage,
    Verification,
)
from support import ListenerNode, free_port, wait_for

from service.config import load_settings
from service.errors import SeriesNotFoundError
from service.pipeline.states import SeriesState

PET = PositronEmissionTomographyImageStorage


Node = ListenerNode


MakeNode = Callable[..., Node]


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[MakeNode]:
    nodes: list[Node] = []

    def make(
        spool: dict[str, object] | None = None,
        queue: dict[str, object] | None = None,
        **listener: object,
    ) -> Node:
        settings = load_settings(
            queue=queue or {},
            listener={"bind_address": "127.0.0.1", "port": free_port(), **listener},
            spool={
                "path": str(tmp_path / f"spool{len(nodes)}"),
                "min_free_bytes": 0,
                "max_used_fraction": 1.0,
                **(spool or {}),
            },
        )
        node = Node(settings)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.stop()


def associate(
    port: int, calling_aet: str = "SCANNER", contexts: tuple[str, ...] = (PET,)
) -> Association:
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    for context in (*contexts, Verification):
        # One context per syntax: files are sent byte for byte in the raw-sending tests.
        ae.add_requested_context(context, ExplicitVRLittleEndian)
        ae.add_requested_context(context, ImplicitVRLittleEndian)
    return ae.associate("127.0.0.1", port, ae_title="UNIPET")


@pytest.fixture
def raw_file_sending() -> Iterator[None]:
    """Make the SCU send files byte for byte (no decode): how a broken sender behaves."""
    from pynetdicom import _config

    saved = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    yield
    _config.STORE_SEND_CHUNKED_DATASET = saved


def first_file(study_copy: Path, series: str = "drf20") -> Path:
    return sorted((study_copy / series).glob("*.dcm"))[0]


def test_echo_answers_success(make_node: MakeNode) -> None:
    node = make_node()
    assoc = associate(node.port)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()


def test_store_writes_spool_and_state(make_node: MakeNode, study_copy: Path) -> None:
    node = make_node()
    path = first_file(study_copy)
    ds = dcmread(path)
    assoc = associate(node.port)
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    series = node.state.get(str(ds.SeriesInstanceUID))
    assert series.state is SeriesState.RECEIVING
    assert series.calling_aet == "SCANNER"
    assert series.expected_instances == int(ds.NumberOfSlices)
    [instance] = node.state.instances(str(ds.SeriesInstanceUID))
    stored = dcmread(node.spool.path_of(instance.spool_key))
    assert stored.SOPInstanceUID == ds.SOPInstanceUID
    assert stored.PixelData == ds.PixelData


def test_unknown_calling_ae_is_rejected(make_node: MakeNode) -> None:
    node = make_node(allowed_calling_aets=["SCANNER"])
    refused = associate(node.port, calling_aet="INTRUDER")
    assert refused.is_rejected
    accepted = associate(node.port, calling_aet="SCANNER")
    assert accepted.is_established
    accepted.release()


def test_calling_ae_from_wrong_host_is_rejected(make_node: MakeNode) -> None:
    node = make_node(allowed_hosts_by_aet={"SCANNER": ["10.1.2.3"]})
    assert associate(node.port, calling_aet="SCANNER").is_rejected
    other = associate(node.port, calling_aet="OTHER")
    assert other.is_established
    other.release()


def test_association_cap_per_calling_ae(make_node: MakeNode) -> None:
    node = make_node(max_associations_per_aet=1)
    first = associate(node.port)
    assert first.is_established
    assert associate(node.port).is_rejected
    other_ae = associate(node.port, calling_aet="OTHER")
    assert other_ae.is_established
    other_ae.release()
    first.release()
    again = associate(node.port)
    assert again.is_established
    again.release()


def store_one(node: Node, item: Dataset | Path, contexts: tuple[str, ...] = (PET,)) -> int:
    """One C-STORE of a dataset or file over a fresh association; returns the status."""
    assoc = associate(node.port, contexts=contexts)
    status = assoc.send_c_store(item)
    assoc.release()
    return int(status.Status)


def _quarantine_reasons(node: Node) -> list[str]:
    return [record["reason"] for record in node.spool.quarantined()]


def test_garbage_dataset_gets_failure_status_and_is_quarantined(
    make_node: MakeNode,
    study_copy: Path,
    tmp_path: Path,
    raw_file_sending: None,
) -> None:
    node = make_node()
    source = first_file(study_copy)
    ds = dcmread(source)
    # Keep a valid file meta (so the SCU can send it raw) and replace the body with garbage.
    good = source.read_bytes()
    meta_end = 132 + 12 + int.from_bytes(good[140:144], "little")
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(good[:meta_end] + b"\x08\x00\x16\x00" + b"\xff" * 37)
    assert store_one(node, garbage) == 0xC210
    assert len(_quarantine_reasons(node)) == 1
    assert _quarantine_reasons(node)[0].startswith("dataset")
    with pytest.raises(SeriesNotFoundError, match="no series"):
        node.state.get(str(ds.SeriesInstanceUID))


def test_truncated_instance_gets_failure_status_and_is_quarantined(
    make_node: MakeNode,
    study_copy: Path,
    tmp_path: Path,
    raw_file_sending: None,
) -> None:
    node = make_node()
    source = first_file(study_copy)
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(source.read_bytes()[:-500])
    assert store_one(node, truncated) == 0xC210
    [record] = node.spool.quarantined()
    assert record["calling_aet"] == "SCANNER"
    assert (node.spool.root / "quarantine" / record["file"]).read_bytes()[
        -100:
    ] == source.read_bytes()[-600:-500]


def test_path_traversal_uid_is_refused(make_node: MakeNode, study_copy: Path) -> None:
    node = make_node()
    ds = dcmread(first_file(study_copy))
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        ds.SeriesInstanceUID = "../../1.2"
    assert store_one(node, ds) == 0xA900
    assert not list((node.spool.root / "incoming").rglob("*.dcm"))
    assert "SeriesInstanceUID" in _quarantine_reasons(node)[0]


def test_sop_class_mismatch_is_refused(
    make_node: MakeNode,
    study_copy: Path,
    tmp_path: Path,
    raw_file_sending: None,
) -> None:
    node = make_node()
    ds = dcmread(first_file(study_copy))
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage  # request says CT, dataset says PET
    path = tmp_path / "mismatch.dcm"
    ds.save_as(path)
    assert store_one(node, path, contexts=(PET, CTImageStorage)) == 0xA900
    assert len(node.spool.quarantined()) == 1


def test_spool_above_watermark_answers_out_of_resources(
    make_node: MakeNode, study_copy: Path
) -> None:
    full = make_node(spool={"min_free_bytes": 1 << 62})  # more than any disk has free
    assert store_one(full, dcmread(first_file(study_copy))) == 0xA700
    assert full.spool.quarantined() == []  # not the sender's fault: nothing kept
    assert not list((full.spool.root / "incoming").rglob("*.dcm"))


def test_ct_is_accepted_but_ignored(make_node: MakeNode, study_copy: Path) -> None:
    node = make_node()
    ds = dcmread(first_file(study_copy))
    ds.SOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.SeriesInstanceUID = generate_uid()
    assoc = associate(node.port, contexts=(CTImageStorage,))
    assert assoc.send_c_store(ds).Status == 0x0000
    assoc.release()
    series = node.state.get(str(ds.SeriesInstanceUID))
    assert series.state is SeriesState.IGNORED
    assert "CT" in series.state_reason


def test_quarantine_record_is_json_with_reason(
    make_node: MakeNode, study_copy: Path, tmp_path: Path
) -> None:
    node = make_node()
    ds = dcmread(first_file(study_copy))
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        ds.StudyInstanceUID = "1.2.03"
    assoc = associate(node.port)
    assoc.send_c_store(ds)
    assoc.release()
    [meta] = list((node.spool.root / "quarantine").glob("*.json"))
    record = json.loads(meta.read_text())
    assert record["status"] == "0xA900"
    assert "StudyInstanceUID" in record["reason"]


def test_too_many_waiting_series_answers_out_of_resources(
    make_node: MakeNode, study_copy: Path
) -> None:
    node = make_node(queue={"max_waiting_series": 1})
    files = sorted((study_copy / "drf20").glob("*.dcm"))
    assoc = associate(node.port)
    assert assoc.send_c_store(dcmread(files[0])).Status == 0x0000
    uid = str(dcmread(files[0]).SeriesInstanceUID)
    assert node.state.transition(uid, SeriesState.COMPLETE, "test", expect=[SeriesState.RECEIVING])
    wait_for(lambda: False, 1.1)  # admission facts are cached for a second
    status = assoc.send_c_store(dcmread(files[1]))
    assoc.release()
    assert status.Status == 0xA701
    assert node.state.get(uid).received_instances == 1


def test_our_own_output_sent_back_is_ignored(
    make_node: MakeNode, study_copy: Path, tmp_path: Path
) -> None:
    from service.dicom.volume import load_pet_volume
    from service.dicom.writer import write_derived_series
    from service.pipeline.inference import GaussianDenoiser

    volume = load_pet_volume(sorted((study_copy / "drf20").glob("*.dcm")))
    denoiser = GaussianDenoiser(5.0)
    derived = write_derived_series(
        volume,
        denoiser.denoise(volume.bqml, volume.spacing_mm, 1e-4).volume_bqml,
        denoiser.algorithm,
        tmp_path / "derived",
    )
    node = make_node()
    assoc = associate(node.port)
    assert assoc.send_c_store(dcmread(derived.paths[0])).Status == 0x0000
    assoc.release()
    series = node.state.get(str(derived.series_instance_uid))
    assert series.state is SeriesState.IGNORED
