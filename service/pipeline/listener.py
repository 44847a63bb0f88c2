"""The DICOM listener: C-ECHO and C-STORE SCP (PS3.4 Annex A and B).

The C-STORE handler does as little as possible (docs/architecture.md, "Data flow"): admission
checks, parse the header once, validate UIDs, then the durable spool write and its
state-database row through the group commit (``service.pipeline.group_commit``: parallel
associations share one directory fsync and one transaction per batch), then the answer.
It never decodes pixels or runs the model. Every refusal is a ``RefusedInstanceError`` mapped to its
DICOM status in exactly one place (``StoreHandler.handle_store``), and its bytes are
quarantined with the reason, so nothing refused is lost.
"""

from __future__ import annotations

import hashlib
import time
from typing import cast

import structlog
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.transport import ThreadedAssociationServer

from service import metrics
from service.config import NodeSettings
from service.dicom import pet
from service.dicom.network import server_ssl_context
from service.dicom.parsing import ACCEPTED_TRANSFER_SYNTAXES, parse_dataset
from service.dicom.selection import (
    REASON_CODES,
    Eligibility,
    Outcome,
    TracerPolicy,
    assess_instance,
)
from service.dicom.uids import validate_uid
from service.errors import (
    STATUS_SUCCESS,
    InvalidUidError,
    NodeError,
    PetHeaderError,
    QueueFullError,
    RefusedInstanceError,
    SopClassMismatchError,
    SpoolFullError,
    StateUnavailableError,
    UndecodableDatasetError,
)
from service.logs import bind_association
from service.pipeline.admission import (
    ASSOCIATION_REFUSAL_REASONS,
    AdmissionPolicy,
    CapacityCheck,
    install_admission,
)
from service.pipeline.group_commit import GroupCommit
from service.pipeline.inference import trained_tracers
from service.pipeline.records import ReceivedInstance
from service.pipeline.spool import Spool
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore

log = structlog.stdlib.get_logger(__name__)

#: PS3.4 Annex A: the Verification SOP Class (C-ECHO).
VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"

#: Storage SOP classes we accept. PET is processed; CT and secondary captures (often sent
#: along with a PET study by auto-routing) are accepted and recorded as IGNORED, so a
#: scanner that sends the whole study sees success rather than per-series failures.
ACCEPTED_STORAGE_SOP_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.128",  # PET Image Storage
    "1.2.840.10008.5.1.4.1.1.130",  # Enhanced PET Image Storage (recorded, refused per series)
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
)

_OUTCOME_STATE = {
    Outcome.ELIGIBLE: SeriesState.RECEIVING,
    Outcome.IGNORED: SeriesState.IGNORED,
    Outcome.REJECTED: SeriesState.REJECTED,
}


class StoreHandler:
    """C-STORE and C-ECHO handlers bound to one spool and one state store."""

    def __init__(self, settings: NodeSettings, spool: Spool, state: StateStore) -> None:
        self.settings = settings
        self.spool = spool
        self.state = state
        self.admission = CapacityCheck(
            spool=spool,
            state=state,
            min_free_bytes=settings.spool.min_free_bytes,
            max_used_fraction=settings.spool.max_used_fraction,
            max_waiting_series=settings.queue.max_waiting_series,
        )
        self.commits = GroupCommit(spool, state, wait_timeout_s=settings.listener.dimse_timeout_s)
        self.tracers = TracerPolicy(
            trained=trained_tracers(settings.model),
            tolerated=frozenset(t.strip().lower() for t in settings.model.tolerated_tracers),
        )

    def handle_echo(self, event: Event) -> int:
        """C-ECHO: the node is up (PS3.4 Annex A)."""
        return STATUS_SUCCESS

    def handle_store(self, event: Event) -> Dataset | int:
        """C-STORE: store durably and record, or refuse with a status and quarantine."""
        calling_aet = str(event.assoc.requestor.ae_title).strip()
        data = b""
        try:
            data = event.encoded_dataset(include_meta=True)
            self.admission.check(time.time())
            self._store(event, data, calling_aet)
        except RefusedInstanceError as exc:
            return self._refuse(exc, data, calling_aet, event)
        except OSError as exc:
            # Disk write failed (full, permissions, I/O error): the sender must retry later.
            refusal = SpoolFullError(f"spool write failed: {exc}")
            return self._refuse(refusal, data, calling_aet, event)
        metrics.instances_received_total.labels(calling_aet=calling_aet).inc()
        return STATUS_SUCCESS

    def _store(self, event: Event, data: bytes, calling_aet: str) -> None:
        record, eligibility = self._examine(event, data, calling_aet)
        receipt = self.commits.submit(record, data)
        if receipt.first_copy_sha256 is not None:
            self._keep_first_copy(record, data, receipt.first_copy_sha256)
        elif eligibility.outcome is not Outcome.ELIGIBLE:
            metrics.instances_not_processed_total.labels(
                outcome=eligibility.outcome.value, reason=eligibility.code
            ).inc()

    def _examine(
        self, event: Event, data: bytes, calling_aet: str
    ) -> tuple[ReceivedInstance, Eligibility]:
        """Parse once and check the header: what the state row will say, or a refusal."""
        ds = parse_dataset(data)
        request = cast(C_STORE, event.request)
        sop_class = str(ds.get("SOPClassUID", ""))
        if sop_class != str(request.AffectedSOPClassUID):
            raise SopClassMismatchError(
                f"SOP Class {sop_class!r} differs from the negotiated "
                f"{request.AffectedSOPClassUID!s}"
            )
        sop_uid = validate_uid(ds.get("SOPInstanceUID", ""), "SOPInstanceUID")
        if sop_uid != str(request.AffectedSOPInstanceUID):
            raise SopClassMismatchError("SOP Instance UID differs from the C-STORE request")
        study_uid = validate_uid(ds.get("StudyInstanceUID", ""), "StudyInstanceUID")
        series_uid = validate_uid(ds.get("SeriesInstanceUID", ""), "SeriesInstanceUID")
        eligibility = assess_instance(ds, self.tracers)
        record = ReceivedInstance(
            study_instance_uid=study_uid,
            series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
            sop_class_uid=sop_class,
            calling_aet=calling_aet,
            modality=str(ds.get("Modality", "")),
            series_description=str(ds.get("SeriesDescription", ""))[:64],
            spool_key=self.spool.incoming_key(study_uid, series_uid, sop_uid),
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            slice_position_mm=_slice_position(ds),
            expected_instances=_expected_count(ds),
            outcome_state=_OUTCOME_STATE[eligibility.outcome],
            outcome_reason=eligibility.reason,
        )
        return record, eligibility

    def _keep_first_copy(self, record: ReceivedInstance, data: bytes, first: str) -> None:
        """Same SOP Instance UID, other bytes: keep the first copy, quarantine the second.

        PS3.3 C.12.1.1.1: a SOP Instance UID names one instance for ever, so other content
        under it is a sender error (or an edited re-send). What was received first is what
        the node processed and delivered; overwriting it silently would leave the derived
        series citing content no longer on disk. The new bytes are quarantined with the
        reason, the series' audit trail says so, and the sender gets Success: its data is
        safe here, and a refusal would only make it re-send the same bytes for ever.
        """
        sop_uid, series_uid = record.sop_instance_uid, record.series_instance_uid
        reason = (
            f"instance {sop_uid} re-sent with different content (sha256 {first[:12]} -> "
            f"{record.sha256[:12]}): first copy kept, new copy quarantined"
        )
        self.spool.quarantine(
            data, reason, {"calling_aet": record.calling_aet, "sop_instance_uid": sop_uid}
        )
        self.state.note(series_uid, reason)
        metrics.instances_conflicting_total.inc()
        log.warning("instance_content_changed", series_uid=series_uid, sop_instance_uid=sop_uid)

    def _refuse(
        self, exc: RefusedInstanceError, data: bytes, calling_aet: str, event: Event
    ) -> Dataset:
        details = {
            "calling_aet": calling_aet,
            "status": f"0x{exc.status:04X}",
            "sop_instance_uid": str(cast(C_STORE, event.request).AffectedSOPInstanceUID),
        }
        # Out-of-resources refusals are not the sender's fault and will be re-sent: keeping
        # their bytes would fill the very disk that is full.
        if data and not isinstance(exc, SpoolFullError | QueueFullError | StateUnavailableError):
            try:
                self.spool.quarantine(data, exc.message, details)
            except OSError:
                log.exception("quarantine_write_failed", reason=exc.reason_code)
        metrics.instances_rejected_total.labels(reason=exc.reason_code).inc()
        log.warning(
            "instance_refused",
            calling_aet=calling_aet,
            status=hex(exc.status),
            reason=exc.reason_code,
            detail=exc.message,
        )
        status = Dataset()
        status.Status = exc.status
        status.ErrorComment = exc.message[:64]
        return status


def on_association_requested(event: Event) -> None:
    """EVT_REQUESTED: label this association's log events with its peer (no PHI: AE, host)."""
    request = event.assoc.requestor.primitive
    calling_aet = str(request.calling_ae_title).strip() if request is not None else ""
    bind_association(calling_aet, event.assoc.requestor.address)
    log.info("association_requested", called_aet=str(event.assoc.acceptor.ae_title).strip())


def _slice_position(ds: Dataset) -> float | None:
    try:
        return pet.slice_position_mm(ds)
    except PetHeaderError:
        return None


def _expected_count(ds: Dataset) -> int | None:
    try:
        return pet.expected_instance_count(ds)
    except PetHeaderError:
        return None


def build_listener_ae(settings: NodeSettings) -> AE:
    """The listener's Application Entity with its presentation contexts and limits."""
    cfg = settings.listener
    ae = AE(ae_title=cfg.ae_title)
    ae.maximum_associations = cfg.max_associations
    ae.maximum_pdu_size = cfg.max_pdu_bytes
    ae.network_timeout = cfg.network_timeout_s
    ae.acse_timeout = cfg.acse_timeout_s
    ae.dimse_timeout = cfg.dimse_timeout_s
    ae.add_supported_context(VERIFICATION_SOP_CLASS)
    for sop_class in ACCEPTED_STORAGE_SOP_CLASSES:
        ae.add_supported_context(sop_class, ACCEPTED_TRANSFER_SYNTAXES)
    return ae


def start_listener(
    settings: NodeSettings, spool: Spool, state: StateStore
) -> ThreadedAssociationServer:
    """Start the listener in background threads and return its server (``shutdown()`` stops it)."""
    ae = build_listener_ae(settings)
    handler = StoreHandler(settings, spool, state)
    # Publish every refusal reason at zero, so dashboards and alerts see 0 rather than "no data".
    for refusal in (
        SpoolFullError,
        QueueFullError,
        SopClassMismatchError,
        InvalidUidError,
        UndecodableDatasetError,
        StateUnavailableError,
    ):
        metrics.instances_rejected_total.labels(reason=refusal.reason_code)
    for reason in ASSOCIATION_REFUSAL_REASONS:
        metrics.associations_rejected_total.labels(reason=reason)
    for code in REASON_CODES[1:]:
        for outcome in (Outcome.IGNORED, Outcome.REJECTED):
            metrics.instances_not_processed_total.labels(outcome=outcome.value, reason=code)
    policy = AdmissionPolicy(
        allowed_calling_aets=list(settings.listener.allowed_calling_aets),
        allowed_hosts_by_aet={
            k: list(v) for k, v in settings.listener.allowed_hosts_by_aet.items()
        },
        max_associations_per_aet=settings.listener.max_associations_per_aet,
        max_pending_per_host=settings.listener.max_pending_per_host,
        acse_timeout_s=settings.listener.acse_timeout_s,
    )
    handlers: list[EventHandlerType] = [
        (evt.EVT_CONN_OPEN, install_admission, [policy]),
        (evt.EVT_REQUESTED, on_association_requested),
        (evt.EVT_C_ECHO, handler.handle_echo),
        (evt.EVT_C_STORE, handler.handle_store),
    ]
    tls = settings.listener.tls
    address = (settings.listener.bind_address, settings.listener.port)
    try:
        server = ae.start_server(
            address,
            block=False,
            evt_handlers=handlers,
            ssl_context=server_ssl_context(tls) if tls is not None else None,
        )
    except OSError as exc:
        raise NodeError(
            f"listener.port: cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc} "
            "(another DICOM node or program uses it; stop it or choose another port)"
        ) from exc
    if server is None:  # only for block=True, which we never use
        raise NodeError("listener did not start")
    log.info(
        "listener_started",
        ae_title=settings.listener.ae_title,
        address=settings.listener.bind_address,
        port=settings.listener.port,
        tls=tls is not None,
    )
    return server


#: How long open associations may go on after the listener stops accepting new ones.
ASSOCIATION_DRAIN_S = 5.0


def close_associations(
    server: ThreadedAssociationServer, drain_s: float = ASSOCIATION_DRAIN_S
) -> int:
    """After ``server.shutdown()``: let established associations end for ``drain_s``, then
    abort every association still open.

    pynetdicom's ``shutdown()`` closes only the listening socket; an open association, even a
    bare TCP probe still inside its ACSE timeout, keeps its non-daemon DUL thread, and the
    interpreter will not exit while one runs. Only associations that are transferring get the
    drain; a connection that never asked for one is aborted at once. Aborting loses nothing:
    a sender keeps every instance we have not acknowledged and sends it again. Returns how
    many were aborted.
    """
    deadline = time.monotonic() + drain_s
    while time.monotonic() < deadline and any(
        assoc.is_established for assoc in server.active_associations
    ):
        time.sleep(0.05)
    left = server.active_associations
    for assoc in left:
        assoc.abort()
    if left:
        log.info("associations_aborted_at_stop", count=len(left), drain_s=drain_s)
    return len(left)
