"""C-STORE SCU against dcmtk storescp, and its failure modes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from support import DcmtkPacs, free_port

from service.config import PeerSettings, SenderSettings
from service.dicom.sender import send_files
from service.errors import SendError

SENDER = SenderSettings(
    ae_title="UNIPET", network_timeout_s=5, acse_timeout_s=5, dimse_timeout_s=10
)


def test_sends_a_series_over_one_association(pacs: DcmtkPacs, study_copy: Path) -> None:
    paths = sorted((study_copy / "drf20").glob("*.dcm"))
    report = send_files(
        paths, PeerSettings(ae_title=pacs.ae_title, host="127.0.0.1", port=pacs.port), SENDER
    )
    assert report.stored == len(paths)
    received = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in pacs.files()}
    assert received == {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}


def test_unreachable_destination_raises_send_error(study_copy: Path) -> None:
    paths = sorted((study_copy / "drf20").glob("*.dcm"))[:2]
    with pytest.raises(SendError, match="association to NOBODY"):
        send_files(
            paths, PeerSettings(ae_title="NOBODY", host="127.0.0.1", port=free_port()), SENDER
        )


def test_unresolvable_host_name_raises_send_error(study_copy: Path) -> None:
    """RFC 2606: ``.invalid`` never resolves, like a stopped PACS container's service name."""
    paths = sorted((study_copy / "drf20").glob("*.dcm"))[:2]
    with pytest.raises(SendError, match=r"association to NOBODY@pacs\.invalid"):
        send_files(paths, PeerSettings(ae_title="NOBODY", host="pacs.invalid", port=104), SENDER)


def test_empty_series_is_an_error() -> None:
    with pytest.raises(SendError, match="nothing to send"):
        send_files([], PeerSettings(ae_title="X", host="127.0.0.1", port=104), SENDER)


def test_rejected_association_is_reported(tmp_path: Path, study_copy: Path) -> None:
    from service.config import load_settings
    from service.pipeline.listener import start_listener
    from service.pipeline.spool import Spool
    from service.pipeline.store import StateStore

    settings = load_settings(
        listener={
            "bind_address": "127.0.0.1",
            "port": free_port(),
            "allowed_calling_aets": ["ONLYME"],
        },
        spool={"path": str(tmp_path / "spool"), "min_free_bytes": 0},
    )
    server = start_listener(settings, Spool(settings.spool.path), StateStore(settings.database_url))
    try:
        with pytest.raises(SendError, match="rejected"):
            send_files(
                sorted((study_copy / "drf20").glob("*.dcm"))[:1],
                PeerSettings(ae_title="UNIPET", host="127.0.0.1", port=settings.listener.port),
                SENDER,
            )
    finally:
        server.shutdown()


def _scp_answering(status: int):  # type: ignore[no-untyped-def]
    """A pynetdicom storage SCP on loopback that answers every C-STORE with ``status``."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import PositronEmissionTomographyImageStorage  # type: ignore[attr-defined]

    ae = AE(ae_title="STRICTPACS")
    ae.add_supported_context(PositronEmissionTomographyImageStorage)
    port = free_port()
    server = ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, lambda _event: status)]
    )
    return server, port


@pytest.mark.parametrize("warning", [0xB000, 0xB006, 0xB007])
def test_warning_statuses_count_as_stored(study_copy: Path, warning: int) -> None:
    server, port = _scp_answering(warning)
    try:
        paths = sorted((study_copy / "drf20").glob("*.dcm"))[:3]
        report = send_files(
            paths, PeerSettings(ae_title="STRICTPACS", host="127.0.0.1", port=port), SENDER
        )
        assert report.stored == 3
        assert report.warnings == {f"0x{warning:04X}": 3}
    finally:
        server.shutdown()


def test_failure_status_raises_with_the_status(study_copy: Path) -> None:
    server, port = _scp_answering(0xA700)
    try:
        paths = sorted((study_copy / "drf20").glob("*.dcm"))[:2]
        with pytest.raises(SendError, match="0xA700 x2"):
            send_files(
                paths, PeerSettings(ae_title="STRICTPACS", host="127.0.0.1", port=port), SENDER
            )
    finally:
        server.shutdown()
