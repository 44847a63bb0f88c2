"""A node state with one processed and one dead-lettered series, made through the real APIs.

The status page tests need a series that went all the way to DONE, with input instances and a
derived series on the spool, without running the listener and Celery. This module plays the
listener (``Spool.store_incoming`` + ``StateStore.record_instance``), the completeness watcher
and the worker (``load_pet_volume``, the Gaussian denoiser, ``write_derived_series``) with the
same calls those components make.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread

from service.config import NodeSettings
from service.dicom import pet
from service.dicom.volume import load_pet_volume
from service.dicom.writer import write_derived_series
from service.pipeline.deliveries import DeliveryState
from service.pipeline.inference import GaussianDenoiser
from service.pipeline.records import DerivedOutput, ReceivedInstance, SeriesUpdate
from service.pipeline.spool import Spool
from service.pipeline.states import PendingStep, SeriesState
from service.pipeline.store import StateStore

S = SeriesState

#: Error text of the dead letter: markup in it proves the page escapes what it shows.
DEAD_ERROR = "send attempt 13 failed: SendError: pacs: <script>alert('x')</script> refused"


@dataclass(frozen=True)
class PopulatedNode:
    """UIDs of what ``populate`` recorded."""

    done_series_uid: str
    output_series_uid: str
    dead_series_uid: str
    input_instances: int


def receive_folder(spool: Spool, state: StateStore, folder: Path, calling_aet: str) -> str:
    """Store and record every file of ``folder`` as the listener would; returns the series UID."""
    series_uid = ""
    for path in sorted(folder.glob("*.dcm")):
        data = path.read_bytes()
        ds = dcmread(path, stop_before_pixels=True)
        series_uid = str(ds.SeriesInstanceUID)
        stored = spool.store_incoming(
            str(ds.StudyInstanceUID), series_uid, str(ds.SOPInstanceUID), data
        )
        state.record_instance(
            ReceivedInstance(
                study_instance_uid=str(ds.StudyInstanceUID),
                series_instance_uid=series_uid,
                sop_instance_uid=str(ds.SOPInstanceUID),
                sop_class_uid=str(ds.SOPClassUID),
                calling_aet=calling_aet,
                modality=str(ds.Modality),
                series_description="",
                spool_key=stored.key,
                sha256=stored.sha256,
                size_bytes=stored.size_bytes,
                slice_position_mm=pet.slice_position_mm(ds),
                expected_instances=pet.expected_instance_count(ds),
                outcome_state=S.RECEIVING,
                outcome_reason="eligible PET",
            )
        )
    return series_uid


def complete_and_queue(state: StateStore, series_uid: str, count: int) -> None:
    """Move a received series to QUEUED as the completeness watcher and dispatcher would."""
    now = time.time()
    reason = f"instance count: {count} of {count} (NumberOfSlices)"
    state.transition(
        series_uid,
        S.COMPLETE,
        reason,
        expect=[S.RECEIVING],
        now=now,
        update=SeriesUpdate(completeness_reason=reason, completed_at=now),
    )
    state.transition(series_uid, S.QUEUED, "queued on cpu", expect=[S.COMPLETE])


def _process_and_deliver(spool: Spool, state: StateStore, series_uid: str) -> str:
    claimed = state.claim(
        series_uid,
        S.PROCESSING,
        expect=[S.QUEUED],
        lease_s=60.0,
        reason="worker started denoising",
        step=PendingStep.DENOISE,
    )
    assert claimed is not None
    volume = load_pet_volume([spool.path_of(i.spool_key) for i in state.instances(series_uid)])
    result = GaussianDenoiser(fwhm_mm=12.0).denoise(volume.bqml, volume.spacing_mm, 1e-4)
    out_dir = spool.outgoing_dir(series_uid, result.algorithm.weights_sha256)
    derived = write_derived_series(
        volume, result.volume_bqml, result.algorithm, out_dir, drf_estimate=18.7
    )
    state.transition(
        series_uid,
        S.WRITTEN,
        f"{len(derived.paths)} instances written",
        expect=[S.PROCESSING],
        update=SeriesUpdate(
            output=DerivedOutput(
                series_uid=str(derived.series_instance_uid),
                key=spool.key_of(out_dir),
                instances=len(derived.paths),
                algorithm=result.algorithm.name,
                drf_estimate=18.7,
                inference_seconds=result.seconds,
                written_at=time.time(),
            ),
            pending_step=PendingStep.SEND,
        ),
    )
    state.transition(series_uid, S.SENDING, "sending derived series", expect=[S.WRITTEN])
    state.deliveries.ensure(series_uid, ["pacs"])
    state.deliveries.mark(series_uid, "pacs", DeliveryState.SENT)
    state.transition(
        series_uid,
        S.DONE,
        "stored at pacs",
        expect=[S.SENDING],
        update=SeriesUpdate(done_at=time.time(), pending_step=PendingStep.NONE),
    )
    return str(derived.series_instance_uid)


def populate(settings: NodeSettings, study_dir: Path) -> PopulatedNode:
    """Record ``study_dir/drf20`` as processed and delivered, ``study_dir/full`` as DEAD."""
    spool = Spool(settings.spool.path)
    state = StateStore(settings.database_url)
    try:
        done_uid = receive_folder(spool, state, study_dir / "drf20", "SCANNER1")
        count = state.get(done_uid).received_instances
        complete_and_queue(state, done_uid, count)
        output_uid = _process_and_deliver(spool, state, done_uid)

        dead_uid = receive_folder(spool, state, study_dir / "full", "SCANNER2")
        complete_and_queue(state, dead_uid, state.get(dead_uid).received_instances)
        state.transition(
            dead_uid,
            S.DEAD,
            f"{DEAD_ERROR} (retries spent)",
            expect=[S.QUEUED],
            update=SeriesUpdate(last_error=DEAD_ERROR, pending_step=PendingStep.SEND),
        )
    finally:
        state.close()
    return PopulatedNode(done_uid, output_uid, dead_uid, count)
