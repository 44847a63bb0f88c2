"""The DICOM listener: C-ECHO and C-STORE SCP (PS3.4 Annex A and B).

The C-STORE handler does as little as possible (DESIGN.md section 4): admission checks,
parse the header, validate UIDs, durable spool write, one state-database row, answer. It never
decodes pixels or runs the model. Every refusal is a ``RefusedInstanceError`` mapped to its
DICOM status in exactly one place (``StoreHandler.handle_store``), and its bytes are
quarantined with the reason, so nothing refused is lost.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import warnings
from dataclasses import dataclass
from io import BytesIO
from typing import cast

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom import AE, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.transport import ThreadedAssociationServer

from service import metrics, pet
from service.admission import ASSOCIATION_REFUSAL_REASONS, AdmissionPolicy, install_admission
from service.config import NodeSettings, TlsSettings
from service.errors import (
    STATUS_SUCCESS,
    InvalidUidError,
    NodeError,
    PetHeaderError,
    QueueFullError,
    RefusedInstanceError,
    SopClassMismatchError,
    SpoolFullError,
    UndecodableDatasetError,
)
from service.selection import Outcome, assess_instance
from service.spool import Spool
from service.state import ReceivedInstance, StateStore
from service.states import SeriesState
from service.uids import validate_uid

log = logging.getLogger(__name__)

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

#: Uncompressed syntaxes, explicit VR preferred (it keeps each element's VR as sent).
ACCEPTED_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
]

_OUTCOME_STATE = {
    Outcome.ELIGIBLE: SeriesState.RECEIVING,
    Outcome.IGNORED: SeriesState.IGNORED,
    Outcome.REJECTED: SeriesState.REJECTED,
}


@dataclass
class Admission:
    """Cached admission facts, refreshed at most once per ``refresh_s``.

    The handler runs once per instance; a full-body PET is hundreds of instances a second, so
    disk and queue checks are cached for a moment instead of hitting the disk and database
    on every C-STORE.
    """

    spool: Spool
    state: StateStore
    min_free_bytes: int
    max_used_fraction: float
    max_waiting_series: int
    refresh_s: float = 1.0
    _checked_at: float = 0.0
    _free_bytes: int = 0
    _used_fraction: float = 0.0
    _waiting: int = 0

    def check(self, now: float) -> None:
        """Raise SpoolFullError or QueueFullError when the node must refuse new data."""
        if now - self._checked_at >= self.refresh_s:
            self._free_bytes = self.spool.free_bytes()
            self._used_fraction = self.spool.used_fraction()
            self._waiting = self.state.waiting_series_count()
            self._checked_at = now
            metrics.spool_free_bytes.set(self._free_bytes)
        if self._free_bytes < self.min_free_bytes or self._used_fraction > self.max_used_fraction:
            raise SpoolFullError(
                f"spool above watermark: {self._free_bytes} bytes free, "
                f"{self._used_fraction:.0%} used"
            )
        if self._waiting >= self.max_waiting_series:
            raise QueueFullError(f"{self._waiting} series waiting for processing; try later")


_PARSE_LOCK = threading.Lock()


def parse_dataset(data: bytes) -> Dataset:
    """Parse received bytes (file meta included) and every top-level element.

    pydicom defers conversion of element values until first access, so a truncated or
    garbage dataset may only fail later; touching every element here makes it fail now,
    inside the handler, where it can be refused and quarantined. pydicom only *warns* when
    the encoding does not match the transfer syntax and then guesses; we refuse instead of
    guessing. ``warnings.catch_warnings`` is process-global, hence the lock (parsing a
    header takes milliseconds).
    """
    errors = (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OverflowError)
    with _PARSE_LOCK:
        with warnings.catch_warnings(record=True) as structural:
            warnings.simplefilter("always")
            try:
                ds = dcmread(BytesIO(data), force=False)
            except errors as exc:
                raise UndecodableDatasetError(f"dataset cannot be parsed: {exc}") from exc
        if structural:
            raise UndecodableDatasetError(
                f"dataset encoding is inconsistent: {structural[0].message}"
            )
        # Invalid *values* (a malformed date, say) are common in clinical headers and are
        # judged where they matter (UIDs below, PET facts in selection); pydicom logs them.
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            try:
                for element in ds:
                    _ = element.value
            except errors as exc:
                raise UndecodableDatasetError(f"dataset cannot be parsed: {exc}") from exc
    if "PixelData" not in ds:
        raise UndecodableDatasetError("dataset has no Pixel Data")
    _check_pixel_data_length(ds)
    return ds


def _check_pixel_data_length(ds: Dataset) -> None:
    """Refuse uncompressed Pixel Data shorter than its header says (a truncated transfer).

    pydicom reads what bytes there are without complaint; the length follows from Rows,
    Columns, Samples per Pixel, Bits Allocated and Number of Frames (PS3.5 8.1.1), plus at
    most one padding byte.
    """
    if ds.file_meta.TransferSyntaxUID not in ACCEPTED_TRANSFER_SYNTAXES:
        return
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        expected = (
            int(ds.Rows)
            * int(ds.Columns)
            * int(ds.get("SamplesPerPixel", 1))
            * frames
            * int(ds.BitsAllocated)
            // 8
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise UndecodableDatasetError(f"image pixel description incomplete: {exc}") from exc
    actual = len(ds.PixelData)
    if actual < expected or actual > expected + 1:
        raise UndecodableDatasetError(
            f"Pixel Data has {actual} bytes, the image header implies {expected}: truncated?"
        )


class StoreHandler:
    """C-STORE and C-ECHO handlers bound to one spool and one state store."""

    def __init__(self, settings: NodeSettings, spool: Spool, state: StateStore) -> None:
        self.settings = settings
        self.spool = spool
        self.state = state
        self.admission = Admission(
            spool=spool,
            state=state,
            min_free_bytes=settings.spool.min_free_bytes,
            max_used_fraction=settings.spool.max_used_fraction,
            max_waiting_series=settings.queue.max_waiting_series,
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
        eligibility = assess_instance(ds)
        position: float | None
        try:
            position = pet.slice_position_mm(ds)
        except PetHeaderError:
            position = None
        stored = self.spool.store_incoming(study_uid, series_uid, sop_uid, data)
        self.state.record_instance(
            ReceivedInstance(
                study_instance_uid=study_uid,
                series_instance_uid=series_uid,
                sop_instance_uid=sop_uid,
                sop_class_uid=sop_class,
                calling_aet=calling_aet,
                modality=str(ds.get("Modality", "")),
                series_description=str(ds.get("SeriesDescription", ""))[:64],
                spool_key=stored.key,
                sha256=stored.sha256,
                size_bytes=stored.size_bytes,
                slice_position_mm=position,
                expected_instances=_expected_count(ds),
                outcome_state=_OUTCOME_STATE[eligibility.outcome],
                outcome_reason=eligibility.reason,
            )
        )

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
        if data and not isinstance(exc, SpoolFullError | QueueFullError):
            try:
                self.spool.quarantine(data, exc.message, details)
            except OSError:
                log.exception("quarantine_write_failed reason=%s", exc.reason_code)
        metrics.instances_rejected_total.labels(reason=exc.reason_code).inc()
        log.warning(
            "instance_refused calling_aet=%s status=0x%04X reason=%s detail=%s",
            calling_aet,
            exc.status,
            exc.reason_code,
            exc.message,
        )
        status = Dataset()
        status.Status = exc.status
        status.ErrorComment = exc.message[:64]
        return status


def _expected_count(ds: Dataset) -> int | None:
    try:
        return pet.expected_instance_count(ds)
    except PetHeaderError:
        return None


def _ssl_context(tls: TlsSettings) -> ssl.SSLContext:
    """Server-side TLS context for DICOM TLS (PS3.15 B.1); TLS 1.2 or later only."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=tls.certificate, keyfile=tls.private_key)
    if tls.ca_certificates is not None:
        context.load_verify_locations(cafile=tls.ca_certificates)
    context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_NONE
    return context


def build_listener_ae(settings: NodeSettings) -> AE:
    """The listener's Application Entity with its presentation contexts and limits."""
    cfg = settings.listener
    ae = AE(ae_title=cfg.ae_title)
    ae.maximum_associations = cfg.max_associations
    ae.maximum_pdu_size = cfg.max_pdu_bytes
    ae.network_timeout = cfg.network_timeout_s
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
    ):
        metrics.instances_rejected_total.labels(reason=refusal.reason_code)
    for reason in ASSOCIATION_REFUSAL_REASONS:
        metrics.associations_rejected_total.labels(reason=reason)
    policy = AdmissionPolicy(
        allowed_calling_aets=list(settings.listener.allowed_calling_aets),
        allowed_hosts_by_aet={
            k: list(v) for k, v in settings.listener.allowed_hosts_by_aet.items()
        },
        max_associations_per_aet=settings.listener.max_associations_per_aet,
    )
    handlers: list[EventHandlerType] = [
        (evt.EVT_CONN_OPEN, install_admission, [policy]),
        (evt.EVT_C_ECHO, handler.handle_echo),
        (evt.EVT_C_STORE, handler.handle_store),
    ]
    tls = settings.listener.tls
    server = ae.start_server(
        (settings.listener.bind_address, settings.listener.port),
        block=False,
        evt_handlers=handlers,
        ssl_context=_ssl_context(tls) if tls is not None else None,
    )
    if server is None:  # only for block=True, which we never use
        raise NodeError("listener did not start")
    log.info(
        "listener_started ae_title=%s address=%s port=%d tls=%s",
        settings.listener.ae_title,
        settings.listener.bind_address,
        settings.listener.port,
        tls is not None,
    )
    return server
