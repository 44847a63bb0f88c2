"""C-STORE SCU: send one derived series to one destination over one association.

Only the SOP classes being sent are proposed (PS3.8 presentation context negotiation), so a
strict PACS never sees a context it did not ask for. Each is proposed with the transfer
syntaxes configured for the destination, one context per syntax so the acceptor's answer
tells which it takes, plus the syntax the files are in as the last resort; each instance
then goes in the first accepted syntax of that order, compressed losslessly on the way
when needed (pydicom encoders: pyjpegls, pylibjpeg-openjpeg, RLE). Success and the warning
statuses B000/B006/B007 count as stored (PS3.4 B.2.3); any failure status, a rejected or
aborted association, or a network error raises ``SendError``, which the send task retries
with backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, evt
from pynetdicom.association import Association

from service.config import PeerSettings, SenderSettings
from service.dicom.network import client_ssl_context, nodelay_on_connection_open
from service.errors import (
    STATUS_SUCCESS,
    STORE_WARNING_STATUSES,
    ContextNotAcceptedError,
    PermanentSendError,
    SendError,
)

log = structlog.stdlib.get_logger(__name__)


@dataclass(frozen=True)
class SendReport:
    """What one association stored."""

    destination_ae_title: str
    stored: int
    warnings: dict[str, int] = field(default_factory=dict)


#: PS3.8 Table 9-21: A-ASSOCIATE-RJ result 1 is "rejected-permanent".
RESULT_REJECTED_PERMANENT = 0x01


def _raise_not_established(assoc: Association, peer: PeerSettings) -> None:
    """Raise the SendError that says why the peer did not take the association.

    A rejection carries result, source and reason (PS3.8 9.3.4); the administrator needs all
    three ("calling AE title not recognized" is a configuration fix, "local limit exceeded"
    is a busy PACS). A permanent rejection raises ``PermanentSendError``: retrying cannot help.
    """
    where = f"association to {peer.ae_title}@{peer.host}:{peer.port}"
    if not assoc.is_rejected:
        raise SendError(f"{where} {'aborted' if assoc.is_aborted else 'failed'}")
    primitive = assoc.acceptor.primitive
    if primitive is None or primitive.result is None:
        raise SendError(f"{where} rejected")
    detail = (
        f"{where} rejected ({primitive.result_str}): {primitive.reason_str} "
        f"[source: {primitive.source_str}]"
    )
    if primitive.result == RESULT_REJECTED_PERMANENT:
        raise PermanentSendError(detail)
    raise SendError(detail)


def send_files(
    paths: Sequence[Path],
    peer: PeerSettings,
    sender: SenderSettings,
    on_stored: Callable[[int], None] | None = None,
) -> SendReport:
    """Send ``paths`` to ``peer`` over one association.

    ``on_stored(n)`` is called before each C-STORE with the number already sent (progress).

    Raises:
        SendError: the association failed, or any instance got a failure status (the
            message lists the statuses); nothing is counted as stored then.
    """
    if not paths:
        raise SendError("nothing to send: the derived series has no files")
    headers = [dcmread(path, stop_before_pixels=True) for path in paths]
    preferences = proposed_syntaxes(peer, {str(h.file_meta.TransferSyntaxUID) for h in headers})
    ae = AE(ae_title=sender.ae_title)
    ae.network_timeout = sender.network_timeout_s
    ae.acse_timeout = sender.acse_timeout_s
    ae.dimse_timeout = sender.dimse_timeout_s
    for sop_class in sorted({str(h.SOPClassUID) for h in headers}):
        for transfer_syntax in preferences:
            ae.add_requested_context(sop_class, transfer_syntax)
    tls_args = (client_ssl_context(peer.tls), peer.host) if peer.tls is not None else None
    try:
        assoc = ae.associate(
            peer.host,
            peer.port,
            ae_title=peer.ae_title,
            evt_handlers=[(evt.EVT_CONN_OPEN, nodelay_on_connection_open)],
            tls_args=tls_args,
        )
    except OSError as exc:
        # A host name that does not resolve (a stopped container, a DNS outage) is raised
        # here rather than reported as a failed association: it is a failed send all the same.
        raise SendError(
            f"association to {peer.ae_title}@{peer.host}:{peer.port} failed: {exc}"
        ) from exc
    if not assoc.is_established:
        _raise_not_established(assoc, peer)
    warnings: dict[str, int] = {}
    failures: dict[str, int] = {}
    try:
        for done, path in enumerate(paths, start=1):
            if on_stored is not None:
                on_stored(done - 1)
            try:
                status = assoc.send_c_store(_in_accepted_syntax(assoc, path, preferences))
            except ContextNotAcceptedError:
                # The peer accepted no presentation context for this SOP class (e.g. a PACS
                # without SR or Encapsulated PDF storage; PS3.8 9.3.2.2).
                sop_class = headers[done - 1].SOPClassUID
                label = f"{sop_class.name} not accepted (a report? see send_quality_report)"
                failures[label] = failures.get(label, 0) + 1
                continue
            code = int(status.Status) if "Status" in status else None
            if code == STATUS_SUCCESS:
                continue
            if code in STORE_WARNING_STATUSES:
                warnings[f"0x{code:04X}"] = warnings.get(f"0x{code:04X}", 0) + 1
                continue
            label = "no response" if code is None else f"0x{code:04X}"
            failures[label] = failures.get(label, 0) + 1
            if code is None:
                break  # association is gone (DIMSE timeout or abort): stop, retry later
    finally:
        if assoc.is_established:
            assoc.release()
    if failures:
        raise SendError(
            f"{peer.ae_title}@{peer.host}:{peer.port} refused instances: "
            + ", ".join(f"{k} x{v}" for k, v in sorted(failures.items()))
        )
    log.info(
        "series_sent", destination=peer.ae_title, instances=len(paths), warnings=warnings or "none"
    )
    return SendReport(destination_ae_title=peer.ae_title, stored=len(paths), warnings=warnings)


def proposed_syntaxes(peer: PeerSettings, file_syntaxes: set[str]) -> list[str]:
    """The destination's preferred syntaxes, then those the files are in (duplicates dropped)."""
    ordered = [*peer.transfer_syntaxes, *sorted(file_syntaxes)]
    return list(dict.fromkeys(ordered))


def _in_accepted_syntax(assoc: Association, path: Path, preferences: Sequence[str]) -> Dataset:
    """The instance at ``path`` in the first of ``preferences`` the acceptor took for its class.

    Raises:
        SendError: No context for its SOP class was accepted, or encoding failed.
    """
    ds = dcmread(path)
    sop_class = str(ds.SOPClassUID)
    accepted = {
        str(context.transfer_syntax[0])
        for context in assoc.accepted_contexts
        if str(context.abstract_syntax) == sop_class
    }
    chosen = next((uid for uid in preferences if uid in accepted), None)
    if chosen is None:
        raise ContextNotAcceptedError(
            f"destination accepted no transfer syntax for SOP class {sop_class}"
        )
    current = UID(ds.file_meta.TransferSyntaxUID)
    target = UID(chosen)
    if target == current:
        return ds
    try:
        if target.is_compressed:
            ds.compress(target, generate_instance_uid=False)
        else:
            ds.file_meta.TransferSyntaxUID = target
    except (RuntimeError, ValueError) as exc:
        raise SendError(f"cannot encode {path.name} as {target.name}: {exc}") from exc
    return ds
