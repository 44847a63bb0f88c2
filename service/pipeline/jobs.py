"""The two jobs a worker does for a series: denoise it, and deliver the result.

Plain functions of a ``WorkerContext`` (Celery tasks in ``service/tasks.py`` only wrap them),
idempotent by construction: the state database decides whether there is anything to do, the
derived UIDs are deterministic, and the output folder is replaced atomically. Any host may run
any attempt.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import sqlalchemy.exc
import structlog

from service import metrics
from service.config import DestinationSettings, NodeSettings
from service.dicom import pet
from service.dicom.card_facts import RangeCheck, check_trained_range, series_tracer
from service.dicom.sender import send_files
from service.dicom.volume import PetVolume, load_pet_volume
from service.dicom.writer import DerivedSeriesOptions, write_derived_series
from service.errors import InvalidTransitionError, PermanentSendError, SendError
from service.pipeline.deliveries import DeliveryState
from service.pipeline.inference import DenoiseResult
from service.pipeline.records import DerivedOutput, SeriesUpdate, SeriesView
from service.pipeline.reporting import finish_report, report_paths_for, start_report
from service.pipeline.states import PendingStep, SeriesState
from service.pipeline.worker_context import WorkerContext

log = structlog.stdlib.get_logger(__name__)

S = SeriesState


@dataclass(frozen=True)
class StepOutcome:
    """What a job did, returned to Celery as a small dict."""

    series_uid: str
    done: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        """Celery result payload (UIDs and words only, no patient data)."""
        return {"series_uid": self.series_uid, "done": self.done, "detail": self.detail}


class LeaseHeartbeat:
    """Renews a running job's lease every ``queue.heartbeat_s`` from a background thread.

    Leases are short (``queue.job_lease_s``, a minute) so that the dispatcher re-queues the
    series of a worker killed mid-job within about a minute; a job that is alive, however
    long it runs (a big volume on a CPU), keeps its lease by this heartbeat.
    """

    def __init__(
        self, ctx: WorkerContext, series_uid: str, state: SeriesState, step: PendingStep
    ) -> None:
        self._ctx = ctx
        self._args = (series_uid, state, step)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unipet-lease", daemon=True)

    def _run(self) -> None:
        queue = self._ctx.settings.queue
        while not self._stop.wait(queue.heartbeat_s):
            try:
                held = self._ctx.state.renew_lease(*self._args, lease_s=queue.job_lease_s)
            except sqlalchemy.exc.OperationalError as exc:
                log.warning("lease_renewal_failed", series_uid=self._args[0], error=str(exc))
                continue
            if not held:
                return  # re-opened or taken over: the job's final compare-and-set will fail

    def __enter__(self) -> LeaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


#: The stages of a denoise job, in order, as ``StageClock`` records them.
DENOISE_STAGES = ("read", "inference", "write", "report")


class StageClock:
    """Wall seconds of each stage of one denoise job, observed as each stage ends.

    Stages (``DENOISE_STAGES``) go to ``unipet_denoise_stage_seconds`` and to
    the job's log line, so an operator sees where a slow series spent its time: on a GPU
    host the network is the smallest part. The report's numbers are measured during the
    write (``reporting.start_report``); its stage is what is left after the write: waiting
    for them, then the SR and PDF.
    """

    def __init__(self) -> None:
        self._mark = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def done(self, stage: str) -> None:
        """End ``stage`` now; the next stage starts from here."""
        now = time.perf_counter()
        self.seconds[stage] = now - self._mark
        self._mark = now
        metrics.denoise_stage_seconds.labels(stage=stage).observe(self.seconds[stage])

    def log_fields(self) -> dict[str, float]:
        """``<stage>_s`` fields for the job's log line, rounded to milliseconds."""
        return {f"{stage}_s": round(value, 3) for stage, value in self.seconds.items()}


def destinations_for(settings: NodeSettings, series: SeriesView) -> list[DestinationSettings]:
    """Configured destinations, or the sender's own AE from the AE table when none are set.

    Raises:
        SendError: no destination is configured and the calling AE is not in ``ae_table``.
    """
    if settings.destinations:
        return list(settings.destinations)
    peer = settings.ae_table.get(series.calling_aet)
    if peer is None:
        raise SendError(
            f"no destination: calling AE {series.calling_aet!r} is not in ae_table and no "
            "destinations are configured"
        )
    return [
        DestinationSettings(
            name=f"sender-{series.calling_aet}",
            ae_title=peer.ae_title,
            host=peer.host,
            port=peer.port,
            tls=peer.tls,
            transfer_syntaxes=peer.transfer_syntaxes,
        )
    ]


def denoise(ctx: WorkerContext, series_uid: str) -> StepOutcome:
    """Load, denoise and write the derived series of one complete input series.

    An input outside the model card's trained ranges (DRF estimate, voxel size, tracer) is
    still denoised; the range note goes into the derived series' DerivationDescription, the
    quality report and the reason of the move to WRITTEN, and is logged.
    """
    lease_s = ctx.settings.queue.job_lease_s
    claimed = ctx.state.claim(
        series_uid,
        S.PROCESSING,
        expect=[S.QUEUED, S.FAILED],
        lease_s=lease_s,
        reason="worker started denoising",
        step=PendingStep.DENOISE,
    )
    if claimed is None:
        current = ctx.state.get(series_uid).state
        return StepOutcome(series_uid, False, f"nothing to do: series is {current.value}")
    stages = StageClock()
    with LeaseHeartbeat(ctx, series_uid, S.PROCESSING, PendingStep.DENOISE):
        instances = ctx.state.instances(series_uid)
        volume = load_pet_volume([ctx.spool.path_of(i.spool_key) for i in instances])
        first = volume.datasets[0]
        stages.done("read")
        result = ctx.denoiser.denoise(
            volume.bqml, volume.spacing_mm, pet.suv_bw_factor(first), pet.patient_weight_kg(first)
        )
        metrics.inference_seconds.labels(device=result.device).observe(result.seconds)
        range_check = _range_check(ctx, series_uid, volume, result)
        stages.done("inference")
        out_dir = ctx.spool.outgoing_dir(series_uid, result.algorithm.weights_sha256)
        report = start_report(ctx, claimed, volume, result)
        derived = write_derived_series(
            volume,
            result.volume_bqml,
            result.algorithm,
            out_dir,
            drf_estimate=result.drf_estimate,
            range_check=range_check,
            options=DerivedSeriesOptions(
                series_description_suffix=ctx.settings.output.series_description_suffix,
                series_number_offset=ctx.settings.output.series_number_offset,
            ),
        )
        stages.done("write")
        if report is not None:
            finish_report(ctx, report, derived)
        stages.done("report")
    # The audit trail keeps the range note with the write it belongs to (the status page
    # reads it from the latest move to WRITTEN).
    written_reason = f"{len(derived.paths)} instances written by {result.algorithm.name}"
    written = ctx.state.transition(
        series_uid,
        S.WRITTEN,
        "; ".join(filter(None, [written_reason, range_check.note])),
        expect=[S.PROCESSING],
        lease_s=ctx.settings.queue.requeue_after_s,
        update=SeriesUpdate(
            output=DerivedOutput(
                series_uid=str(derived.series_instance_uid),
                key=ctx.spool.key_of(derived.directory),
                instances=len(derived.paths),
                algorithm=f"{result.algorithm.name} {result.algorithm.software_versions}"[:128],
                drf_estimate=result.drf_estimate,
                inference_seconds=result.seconds,
                written_at=time.time(),
            ),
            pending_step=PendingStep.SEND,
            attempts=0,  # the send step counts its own attempts against send_max_retries
            last_error="",
        ),
    )
    if written is None:
        # Re-opened by new instances while we worked: this output is stale; the next run
        # rewrites the same folder with the same UIDs.
        metrics.series_processed_total.labels(outcome="superseded").inc()
        return StepOutcome(series_uid, False, "series changed while processing; result dropped")
    metrics.series_processed_total.labels(outcome="written").inc()
    ctx.state.deliveries.ensure(
        series_uid, [d.name for d in _destinations_or_empty(ctx.settings, written)]
    )
    log.info(
        "series_written",
        series_uid=series_uid,
        output_uid=derived.series_instance_uid,
        instances=len(derived.paths),
        seconds=result.seconds,
        outside_trained_range=range_check.outside,
        **stages.log_fields(),
    )
    return StepOutcome(series_uid, True, f"written {len(derived.paths)} instances")


def _range_check(
    ctx: WorkerContext, series_uid: str, volume: PetVolume, result: DenoiseResult
) -> RangeCheck:
    """The series against the model card's trained ranges, logged when outside them."""
    card = ctx.denoiser.card
    tracer = series_tracer(volume.datasets[0])
    check = check_trained_range(
        card.ranges if card is not None else None,
        drf_estimate=result.drf_estimate,
        spacing_mm=volume.spacing_mm,
        tracer=tracer,
    )
    if check.outside:
        slice_mm, row_mm, column_mm = volume.spacing_mm
        log.warning(
            "outside_trained_range",
            series_uid=series_uid,
            drf_estimate=result.drf_estimate,
            pixel_mm=(row_mm, column_mm),
            slice_mm=slice_mm,
            tracer=tracer,
            findings=list(check.findings),
            algorithm=result.algorithm.software_versions,
        )
    return check


def _destinations_or_empty(settings: NodeSettings, series: SeriesView) -> list[DestinationSettings]:
    try:
        return destinations_for(settings, series)
    except SendError:
        return []


def deliver(ctx: WorkerContext, series_uid: str) -> StepOutcome:
    """Send the derived series to every destination it has not reached yet.

    Raises:
        SendError: at least one destination failed; the others keep their SENT state, so a
            retry only sends where it is still missing.
    """
    claimed = ctx.state.claim(
        series_uid,
        S.SENDING,
        expect=[S.WRITTEN, S.FAILED],
        lease_s=ctx.settings.queue.job_lease_s,
        reason="sending derived series",
        step=PendingStep.SEND,
    )
    if claimed is None:
        current = ctx.state.get(series_uid).state
        return StepOutcome(series_uid, False, f"nothing to do: series is {current.value}")
    destinations = destinations_for(ctx.settings, claimed)
    ctx.state.deliveries.ensure(series_uid, [d.name for d in destinations])
    already = ctx.state.deliveries.sent_to(series_uid)
    if claimed.output_key is None:
        raise InvalidTransitionError(f"series {series_uid} is {claimed.state.value} without output")
    paths = sorted(ctx.spool.path_of(claimed.output_key).glob("*.dcm"))
    errors: list[str] = []
    permanent = False
    with LeaseHeartbeat(ctx, series_uid, S.SENDING, PendingStep.SEND):
        for destination in destinations:
            if destination.name in already:
                continue
            try:
                reports = report_paths_for(ctx.spool, claimed.output_key, destination)
                send_files([*paths, *reports], destination, ctx.settings.sender)
            except SendError as exc:
                metrics.send_attempts_total.labels(
                    destination=destination.name, outcome="failure"
                ).inc()
                ctx.state.deliveries.mark(
                    series_uid, destination.name, DeliveryState.FAILED, str(exc)
                )
                errors.append(f"{destination.name}: {exc}")
                permanent = permanent or isinstance(exc, PermanentSendError)
                continue
            metrics.send_attempts_total.labels(
                destination=destination.name, outcome="success"
            ).inc()
            ctx.state.deliveries.mark(series_uid, destination.name, DeliveryState.SENT)
    if errors:
        raise (PermanentSendError if permanent else SendError)("; ".join(errors))
    now = time.time()
    done = ctx.state.transition(
        series_uid,
        S.DONE,
        f"stored at {', '.join(d.name for d in destinations)}",
        expect=[S.SENDING],
        now=now,
        update=SeriesUpdate(done_at=now, pending_step=PendingStep.NONE, last_error=""),
    )
    if done is not None:
        metrics.end_to_end_seconds.observe(now - done.last_received_at)
    return StepOutcome(series_uid, done is not None, "delivered")
