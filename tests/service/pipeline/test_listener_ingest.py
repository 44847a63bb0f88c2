"""The listener with compressed syntaxes and non-PET nuclides, over real sockets.

Compressed instances are spooled byte for byte (the handler decodes nothing); a broken
encapsulation is refused 0xC210 from its structure alone; a Lu-177 study stored as PT is
IGNORED with its reason, counted in metrics and shown on the status page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_samples import compress, restamp
from prometheus_client import REGISTRY
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    JPEG2000Lossless,
    JPEGLSLossless,
    PositronEmissionTomographyImageStorage,
    RLELossless,
)
from pynetdicom import AE
from support import free_port

from service.config import NodeSettings, load_settings
from service.ops.status_page import render_status_page
from service.pipeline.listener import start_listener
from service.pipeline.spool import Spool
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore

PET = PositronEmissionTomographyImageStorage
STATUS_CANNOT_UNDERSTAND = 0xC210


class Node:
    def __init__(self, settings: NodeSettings) -> None:
        self.settings = settings
        self.spool = Spool(settings.spool.path)
        self.state = StateStore(settings.database_url)
        self.server = start_listener(settings, self.spool, self.state)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    settings = load_settings(
        listener={"bind_address": "127.0.0.1", "port": free_port()},
        spool={"path": str(tmp_path / "spool"), "min_free_bytes": 0, "max_used_fraction": 1.0},
    )
    running = Node(settings)
    yield running
    running.server.shutdown()
    running.state.close()


def send(port: int, paths: list[Path], syntax: UID) -> list[int]:
    ae = AE(ae_title="SCANNER")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(PET, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title="UNIPET")
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(dcmread(path)).Status) for path in paths]
    finally:
        assoc.release()


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless, RLELossless])
def test_compressed_instances_are_spooled_as_received(
    node: Node, study_copy: Path, tmp_path: Path, syntax: UID
) -> None:
    copy = restamp(study_copy / "drf20", tmp_path / "c", syntax.keyword, limit=2)
    compress(copy, syntax)
    paths = sorted(copy.glob("*.dcm"))[:2]
    assert send(node.settings.listener.port, paths, syntax) == [0, 0]
    sent = dcmread(paths[0])
    instances = node.state.instances(str(sent.SeriesInstanceUID))
    key = next(i.spool_key for i in instances if i.sop_instance_uid == sent.SOPInstanceUID)
    spooled = dcmread(node.spool.path_of(key))
    assert spooled.file_meta.TransferSyntaxUID == syntax
    assert spooled.PixelData == sent.PixelData


def test_broken_encapsulation_is_refused_without_decoding(
    node: Node, study_copy: Path, tmp_path: Path
) -> None:
    copy = restamp(study_copy / "drf20", tmp_path / "c", "broken", limit=1)
    compress(copy, JPEGLSLossless)
    path = sorted(copy.glob("*.dcm"))[0]
    ds = dcmread(path)
    data = bytearray(ds.PixelData)
    # The first fragment's length claims 4 bytes more than there are.
    length = int.from_bytes(data[12:16], "little")
    data[12:16] = (length + 4).to_bytes(4, "little")
    ds.PixelData = bytes(data)
    ds.save_as(path, enforce_file_format=True)
    assert send(node.settings.listener.port, [path], JPEGLSLossless) == [STATUS_CANNOT_UNDERSTAND]
    assert any("encapsulated Pixel Data" in str(q) for q in node.spool.quarantined())


def _lutetium(ds: Dataset, _index: int) -> None:
    drug = ds.RadiopharmaceuticalInformationSequence[0]
    code = drug.RadionuclideCodeSequence[0]
    code.CodeValue, code.CodingSchemeDesignator = "447553000", "SCT"
    code.CodeMeaning = "^177^Lutetium"
    drug.RadionuclideHalfLife = "574300"
    drug.Radiopharmaceutical = "Lutetium Lu^177^ vipivotide tetraxetan"


def _ignored_count() -> float:
    value = REGISTRY.get_sample_value(
        "unipet_instances_not_processed_total",
        {"outcome": "ignored", "reason": "not_positron_emitter"},
    )
    return value or 0.0


def test_lutetium_stored_as_pet_is_ignored_counted_and_shown(
    node: Node, study_copy: Path, tmp_path: Path
) -> None:
    copy = restamp(study_copy / "drf20", tmp_path / "lu", "lu177", _lutetium, limit=3)
    before = _ignored_count()
    paths = sorted(copy.glob("*.dcm"))
    assert send(node.settings.listener.port, paths, dcmread(paths[0]).file_meta.TransferSyntaxUID)
    uid = str(dcmread(paths[0]).SeriesInstanceUID)
    series = node.state.get(uid)
    assert series.state is SeriesState.IGNORED
    assert "Lu-177 is not a positron emitter" in series.state_reason
    assert _ignored_count() - before == len(paths)
    page = render_status_page(node.settings, node.state, [])
    assert "Not denoised, by reason" in page
    assert "Lu-177 is not a positron emitter" in page
