"""Admission: which peers may open an association, how many at once, and whether there is room.

pynetdicom offers a calling-AE allow-list but no host check and no per-AE cap, and it has no
hook to reject an A-ASSOCIATE-RQ for a reason of our own. ``AdmissionACSE`` adds that one hook:
it is installed on each new acceptor association when its transport connection opens
(EVT_CONN_OPEN fires before negotiation starts) and answers A-ASSOCIATE-RJ with the
PS3.8 Table 9-21 result/source/reason that fits, counting the refusal in metrics.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

import structlog
from pynetdicom import evt
from pynetdicom.acse import ACSE
from pynetdicom.association import Association
from pynetdicom.events import Event

from service import metrics
from service.dicom.network import nodelay_on_connection_open
from service.errors import QueueFullError, SpoolFullError
from service.pipeline.spool import Spool
from service.pipeline.store import StateStore

log = structlog.stdlib.get_logger(__name__)

# PS3.8 Table 9-21: (result, source, reason/diagnostic) of an A-ASSOCIATE-RJ.
REJECT_CALLING_AE_NOT_RECOGNIZED = (0x01, 0x01, 0x03)
REJECT_LOCAL_LIMIT_EXCEEDED = (0x02, 0x03, 0x02)

#: Values of the ``reason`` label of ``unipet_associations_rejected_total``.
ASSOCIATION_REFUSAL_REASONS = (
    "calling_aet_not_allowed",
    "host_not_allowed",
    "too_many_associations",
)


@dataclass
class AdmissionPolicy:
    """Who may associate: calling-AE allow-list, host check per AE, cap per AE."""

    allowed_calling_aets: list[str]
    allowed_hosts_by_aet: dict[str, list[str]]
    max_associations_per_aet: int
    _active: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refusal(self, calling_aet: str, host: str) -> tuple[str, tuple[int, int, int]] | None:
        """The reason and A-ASSOCIATE-RJ triple for refusing a peer, or None to accept.

        An accepted peer holds one of its AE's slots until ``release`` is called.
        """
        if self.allowed_calling_aets and calling_aet not in self.allowed_calling_aets:
            return "calling_aet_not_allowed", REJECT_CALLING_AE_NOT_RECOGNIZED
        hosts = self.allowed_hosts_by_aet.get(calling_aet)
        if hosts is not None and host not in hosts:
            return "host_not_allowed", REJECT_CALLING_AE_NOT_RECOGNIZED
        with self._lock:
            if self._active[calling_aet] >= self.max_associations_per_aet:
                return "too_many_associations", REJECT_LOCAL_LIMIT_EXCEEDED
            self._active[calling_aet] += 1
        return None

    def release(self, calling_aet: str) -> None:
        """Give back the slot an accepted association held."""
        with self._lock:
            if self._active[calling_aet] > 0:
                self._active[calling_aet] -= 1


class AdmissionACSE(ACSE):
    """ACSE that consults an ``AdmissionPolicy`` before the usual negotiation."""

    def __init__(self, assoc: Association, policy: AdmissionPolicy) -> None:
        super().__init__(assoc)
        self._policy = policy

    def _negotiate_as_acceptor(self) -> None:
        request = self.requestor.primitive
        calling_aet = str(request.calling_ae_title).strip() if request is not None else ""
        host = self.assoc.requestor.address
        refusal = self._policy.refusal(calling_aet, host)
        if refusal is not None:
            reason, triple = refusal
            metrics.associations_rejected_total.labels(reason=reason).inc()
            log.warning("association_rejected", calling_aet=calling_aet, host=host, reason=reason)
            self.send_reject(*triple)
            evt.trigger(self.assoc, evt.EVT_REJECTED, {})
            self.assoc.kill()
            return
        # The connection closes exactly once however the association ends (release,
        # abort, rejected contexts, dropped socket), so the slot is given back there.
        self.assoc.bind(evt.EVT_CONN_CLOSE, lambda _event: self._policy.release(calling_aet))
        super()._negotiate_as_acceptor()


def install_admission(event: Event, policy: AdmissionPolicy) -> None:
    """EVT_CONN_OPEN handler for the listener: Nagle off and our admission ACSE installed."""
    nodelay_on_connection_open(event)
    event.assoc.acse = AdmissionACSE(event.assoc, policy)


@dataclass
class CapacityCheck:
    """Spool and queue capacity, refreshed at most once per ``refresh_s``.

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
