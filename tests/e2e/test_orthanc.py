"""The node sends to a real Orthanc PACS; the derived series is read back over its REST API."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from support import NodeFactory, free_port, wait_for
from test_pipeline import series_uid_of, storescu, wait_state

from service.dicom import pet
from service.pipeline.inference import load_denoiser
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore

ORTHANC_AET = "ORTHANC"


class Orthanc:
    """An Orthanc server on free loopback ports with its storage in a temporary folder."""

    def __init__(self, folder: Path, **extra: object) -> None:
        self.dicom_port = free_port()
        self.http_port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "orthanc.json"
        config.write_text(
            json.dumps(
                {
                    "Name": "unipet-test",
                    "StorageDirectory": str(folder / "db"),
                    "IndexDirectory": str(folder / "db"),
                    "DicomAet": ORTHANC_AET,
                    "DicomPort": self.dicom_port,
                    "HttpPort": self.http_port,
                    "RemoteAccessAllowed": False,
                    "AuthenticationEnabled": False,
                    "DicomCheckCalledAet": True,
                    "Plugins": [],
                    "HttpsVerifyPeers": False,
                    **extra,
                }
            )
        )
        self.process = subprocess.Popen(
            [shutil.which("Orthanc") or "/usr/sbin/Orthanc", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"},
        )
        assert wait_for(self._alive, 30, interval_s=0.2), "Orthanc did not start"

    def _alive(self) -> bool:
        try:
            return bool(self.get("/system")["DicomAet"] == ORTHANC_AET)
        except OSError:
            return False

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def post(self, path: str, body: object) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    if shutil.which("Orthanc") is None and not Path("/usr/sbin/Orthanc").exists():
        pytest.skip("Orthanc not installed (apt-get install orthanc)")
    server = Orthanc(tmp_path / "orthanc")
    yield server
    server.stop()


def _stored_file(orthanc: Orthanc, instance_id: str) -> bytes:
    url = f"http://127.0.0.1:{orthanc.http_port}/instances/{instance_id}/file"
    with urllib.request.urlopen(url, timeout=5) as response:
        return bytes(response.read())


def test_derived_series_arrives_in_orthanc_with_its_tags(
    node_factory: NodeFactory,
    orthanc: Orthanc,
    study_copy: Path,
) -> None:
    _node, settings = node_factory(
        orthanc.dicom_port,
        destinations=[
            {
                "name": "orthanc",
                "ae_title": ORTHANC_AET,
                "host": "127.0.0.1",
                "port": orthanc.dicom_port,
            }
        ],
    )
    folder = study_copy / "drf20"
    source = dcmread(sorted(folder.glob("*.dcm"))[0], stop_before_pixels=True)
    uid = series_uid_of(folder)
    assert storescu(folder, settings.listener.port).returncode == 0
    state = StateStore(settings.database_url)
    assert wait_state(state, uid, {SeriesState.DONE, SeriesState.DEAD}, 90) is SeriesState.DONE
    output_uid = state.get(uid).output_series_uid
    [series_id] = orthanc.post(
        "/tools/find", {"Level": "Series", "Query": {"SeriesInstanceUID": output_uid}}
    )
    series = orthanc.get(f"/series/{series_id}")
    assert len(series["Instances"]) == len(list(folder.glob("*.dcm")))
    study = orthanc.get(f"/studies/{series['ParentStudy']}")
    assert study["MainDicomTags"]["StudyInstanceUID"] == source.StudyInstanceUID
    tags = orthanc.get(f"/instances/{series['Instances'][0]}/tags?simplify")
    assert tags["ImageType"].split("\\")[:2] == ["DERIVED", "PRIMARY"]
    assert tags["SeriesDescription"] == f"{source.SeriesDescription} [UniPET]"
    assert tags["Units"] == "BQML"
    equipment = tags["ContributingEquipmentSequence"][-1]
    assert equipment["ManufacturerModelName"] == load_denoiser(settings.model).algorithm.name
    assert tags["FrameOfReferenceUID"] == source.FrameOfReferenceUID
    # The input series was never sent to Orthanc: only the derived series and its quality
    # report (SR and encapsulated PDF, same study) are there.
    others = [s for s in orthanc.get("/series") if s != series_id]
    modalities = sorted(orthanc.get(f"/series/{s}")["MainDicomTags"]["Modality"] for s in others)
    assert modalities == ["DOC", "SR"]
    assert {orthanc.get(f"/series/{s}")["ParentStudy"] for s in others} == {study["ID"]}
    # SUV from the stored output's headers equals SUV from the input's (Orthanc's own copy).
    with urllib.request.urlopen(
        f"http://127.0.0.1:{orthanc.http_port}/instances/{series['Instances'][0]}/file", timeout=5
    ) as response:
        stored = dcmread(BytesIO(response.read()))
    assert pet.suv_bw_factor(stored) == pytest.approx(pet.suv_bw_factor(source), rel=1e-9)


def test_quality_report_is_stored_and_served_back_by_orthanc(
    orthanc: Orthanc, tmp_path: Path
) -> None:
    """The SR and PDF go in the series' association; Orthanc keeps and returns them intact."""
    from pet_samples import algorithm, make_study
    from scipy import ndimage

    from service.config import PeerSettings, SenderSettings
    from service.dicom.report import report_dir, write_quality_report
    from service.dicom.report_identity import ReportTimes
    from service.dicom.sender import send_files
    from service.dicom.synthetic import write_simulated_study
    from service.dicom.volume import load_pet_volume
    from service.dicom.writer import write_derived_series

    received = load_pet_volume(
        write_simulated_study(make_study(seed=9, shape=(8, 12, 12), drfs=(20.0,)), tmp_path)[
            "drf20"
        ]
    )
    derived = write_derived_series(
        received, ndimage.gaussian_filter(received.bqml, 1.0), algorithm(), tmp_path / "out"
    )
    files = write_quality_report(
        received,
        derived.paths,
        algorithm(),
        report_dir(derived.directory),
        drf_estimate=None,
        clipped_voxels=0,
        card=None,
        times=ReportTimes(None, None, None, None),
    )
    peer = PeerSettings(ae_title=ORTHANC_AET, host="127.0.0.1", port=orthanc.dicom_port)
    report = send_files([*derived.paths, *files.dicom_paths], peer, SenderSettings())
    assert report.stored == len(derived.paths) + 2
    for path in files.dicom_paths:
        sent = dcmread(path)
        [instance_id] = orthanc.post(
            "/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": sent.SOPInstanceUID}}
        )
        stored = dcmread(BytesIO(_stored_file(orthanc, instance_id)))
        assert stored.SOPClassUID == sent.SOPClassUID
        assert stored.StudyInstanceUID == derived_study_uid(derived.paths[0])
        if "EncapsulatedDocument" in sent:
            assert stored.EncapsulatedDocument == sent.EncapsulatedDocument
        else:
            assert stored.ContentSequence == sent.ContentSequence


def derived_study_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)
