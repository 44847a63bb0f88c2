"""A real PACS forwarding JPEG-LS: Orthanc stores with IngestTranscoding, forwards as stored.

Orthanc is configured like an archive that compresses on ingest (``IngestTranscoding``
JPEG-LS lossless) and never transcodes on the way out (``TranscodeDicomProtocol`` false,
the node's modality entry with ``AllowTranscoding`` false), so the node receives JPEG-LS,
spools it as received, decodes it in the worker and sends the derived series back.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import JPEGLSLossless
from support import free_port, wait_for
from test_orthanc import ORTHANC_AET, Orthanc
from test_pipeline import series_uid_of, wait_state

from service.config import NodeSettings
from service.dicom import pet
from service.ops import dcmtk
from service.pipeline.spool import Spool
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore
from service.runtime import AllInOneNode


@pytest.fixture
def node_port() -> int:
    return free_port()


@pytest.fixture
def archive(tmp_path: Path, node_port: int) -> Iterator[Orthanc]:
    if shutil.which("Orthanc") is None and not Path("/usr/sbin/Orthanc").exists():
        pytest.skip("Orthanc not installed (apt-get install orthanc)")
    server = Orthanc(
        tmp_path / "orthanc",
        IngestTranscoding=JPEGLSLossless,
        TranscodeDicomProtocol=False,
        DicomModalities={
            "unipet": {
                "AET": "UNIPET",
                "Host": "127.0.0.1",
                "Port": node_port,
                "AllowTranscoding": False,
            }
        },
    )
    yield server
    server.stop()


def test_jpeg_ls_forwarded_by_orthanc_comes_back_derived(
    node_factory: Callable[..., tuple[AllInOneNode, NodeSettings]],
    archive: Orthanc,
    node_port: int,
    study_copy: Path,
) -> None:
    _node, settings = node_factory(
        archive.dicom_port,
        listener={"port": node_port},
        destinations=[
            {
                "name": "orthanc",
                "ae_title": ORTHANC_AET,
                "host": "127.0.0.1",
                "port": archive.dicom_port,
            }
        ],
    )
    folder = study_copy / "drf20"
    uid = series_uid_of(folder)
    sent = dcmtk.storescu(folder, archive.dicom_port, ORTHANC_AET, "SCANNER", timeout_s=120)
    assert sent.returncode == 0, sent.stderr
    [series_id] = archive.post(
        "/tools/find", {"Level": "Series", "Query": {"SeriesInstanceUID": uid}}
    )
    first = archive.get(f"/series/{series_id}")["Instances"][0]
    url = f"http://127.0.0.1:{archive.http_port}/instances/{first}/metadata/TransferSyntax"
    with urllib.request.urlopen(url, timeout=5) as reply:
        assert reply.read().decode() == JPEGLSLossless
    # Synchronous: the reply comes when the C-STOREs are done, so allow more than post()'s 5 s.
    request = urllib.request.Request(
        f"http://127.0.0.1:{archive.http_port}/modalities/unipet/store",
        data=json.dumps({"Resources": [series_id], "Synchronous": True}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=120) as reply:
        job = json.loads(reply.read())
    assert job.get("FailedInstancesCount", 0) == 0, job
    state = StateStore(settings.database_url)
    assert wait_state(state, uid, {SeriesState.DONE, SeriesState.DEAD}, 120) is SeriesState.DONE
    instances = state.instances(uid)
    spool = Spool(settings.spool.path)
    spooled = {i.sop_instance_uid: spool.path_of(i.spool_key) for i in instances}
    for path in sorted(folder.glob("*.dcm")):
        original = dcmread(path)
        received = dcmread(spooled[str(original.SOPInstanceUID)])
        assert received.file_meta.TransferSyntaxUID == JPEGLSLossless
        assert np.array_equal(received.pixel_array, original.pixel_array)
    output_uid = state.get(uid).output_series_uid
    found = archive.post(
        "/tools/find", {"Level": "Series", "Query": {"SeriesInstanceUID": output_uid}}
    )
    assert len(found) == 1
    wait_for(lambda: len(archive.get(f"/series/{found[0]}")["Instances"]) == len(instances), 10)
    source = dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)
    stored = archive.get(
        f"/instances/{archive.get(f'/series/{found[0]}')['Instances'][0]}/tags?simplify"
    )
    assert stored["ImageType"].split("\\")[:2] == ["DERIVED", "PRIMARY"]
    assert "LossyImageCompression" not in stored
    assert float(stored["PatientWeight"]) == float(source.PatientWeight)
    assert pet.suv_bw_factor(source) > 0
