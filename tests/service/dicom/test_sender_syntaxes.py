"""Per-destination transfer syntaxes: the sender uses the first one the destination accepts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
    PositronEmissionTomographyImageStorage,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.events import Event
from support import free_port

from service.config import PeerSettings, SenderSettings, load_settings
from service.dicom.sender import send_files
from service.errors import ConfigError

PET = PositronEmissionTomographyImageStorage


class Destination:
    """A pynetdicom SCP that accepts PET in the given syntaxes and keeps what arrives."""

    def __init__(self, syntaxes: list[UID]) -> None:
        self.received: list[tuple[str, np.ndarray, str]] = []
        self.port = free_port()
        ae = AE(ae_title="TESTPACS")
        ae.add_supported_context(PET, syntaxes)
        server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self.store)]
        )
        assert server is not None
        self.server = server

    def store(self, event: Event) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        syntax = str(ds.file_meta.TransferSyntaxUID)
        self.received.append((syntax, ds.pixel_array.copy(), str(ds.SOPInstanceUID)))
        return 0x0000


@pytest.fixture
def destination(request: pytest.FixtureRequest) -> Iterator[Destination]:
    running = Destination(request.param)
    yield running
    running.server.shutdown()


def peer(port: int, syntaxes: list[str]) -> PeerSettings:
    return PeerSettings(
        ae_title="TESTPACS", host="127.0.0.1", port=port, transfer_syntaxes=syntaxes
    )


@pytest.mark.parametrize(
    ("destination", "expected"),
    [
        ([JPEGLSLossless, ExplicitVRLittleEndian], JPEGLSLossless),
        ([ExplicitVRLittleEndian], ExplicitVRLittleEndian),
        ([RLELossless], RLELossless),
    ],
    indirect=["destination"],
)
def test_first_accepted_syntax_is_used_and_pixels_are_unchanged(
    destination: Destination, expected: UID, study_copy: Path
) -> None:
    paths = sorted((study_copy / "drf20").glob("*.dcm"))[:3]
    send_files(
        paths,
        peer(destination.port, [JPEGLSLossless, RLELossless, ExplicitVRLittleEndian]),
        SenderSettings(),
    )
    assert {syntax for syntax, _, _ in destination.received} == {expected}
    originals = {str(dcmread(p).SOPInstanceUID): dcmread(p).pixel_array for p in paths}
    for _, pixels, uid in destination.received:
        assert np.array_equal(pixels, originals[uid])


def test_lossy_or_unknown_syntaxes_cannot_be_configured() -> None:
    with pytest.raises(ConfigError, match="cannot be proposed"):
        load_settings(
            destinations=[
                {
                    "name": "pacs",
                    "ae_title": "PACS",
                    "host": "127.0.0.1",
                    "port": 104,
                    "transfer_syntaxes": ["1.2.840.10008.1.2.4.91"],
                }
            ]
        )
