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
    "too_many_pending",
)


@dataclass
class AdmissionPolicy:
    """Who may associate: calling-AE allow-list, host check per AE, cap per AE."""

    allowed_calling_aets: list[str]
    allowed_hosts_by_aet: dict[str, list[str]]
    max_associations_per_aet: int
    max_pending_per_host: int = 8
    acse_timeout_s: float = 5.0
    _active: Counter[str] = field(default_factory=Counter)
    _pending: Counter[str] = field(default_factory=Counter)
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

    def open_pending(self, host: str) -> bool:
        """Count a new connection from ``host`` that has not asked for an association yet.

        False (and nothing counted) when the host already has ``max_pending_per_host`` such
        connections: idle or half-open sockets from one host must not use up the listener's
        association slots and lock every other sender out.
        """
        with self._lock:
            if self._pending[host] >= self.max_pending_per_host:
                return False
            self._pending[host] += 1
            return True

    def close_pending(self, host: str) -> None:
        """The connection from ``host`` sent its A-ASSOCIATE-RQ or went away."""
        with self._lock:
            if self._pending[host] > 0:
                self._pending[host] -= 1


class AdmissionACSE(ACSE):
    """ACSE that consults an ``AdmissionPolicy`` before the usual negotiation."""

    def __init__(self, assoc: Association, policy: AdmissionPolicy, pending: _Pending) -> None:
        super().__init__(assoc)
        self._policy = policy
        self._pending = pending

    def _negotiate_as_acceptor(self) -> None:
        self._pending.done()
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


@dataclass
class _Pending:
    """One connection's place in its host's count of connections still to send a request."""

    policy: AdmissionPolicy
    host: str
    _open: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def done(self) -> None:
        with self._lock:
            if self._open:
                self._open = False
                self.policy.close_pending(self.host)


def install_admission(event: Event, policy: AdmissionPolicy) -> None:
    """EVT_CONN_OPEN handler for the listener: Nagle off and our admission ACSE installed.

    Runs in the connection's thread before its reactor starts, so the ACSE timeout set here
    is the time the peer gets to send its A-ASSOCIATE-RQ (pynetdicom's default is 30 s, long
    enough for twenty idle sockets to lock every sender out). A host over its cap of such
    pending connections gets a zero timeout: its socket is closed at once.
    """
    nodelay_on_connection_open(event)
    assoc = event.assoc
    host = str(assoc.requestor.address)
    if not policy.open_pending(host):
        metrics.associations_rejected_total.labels(reason="too_many_pending").inc()
        log.warning("connection_closed", host=host, reason="too_many_pending")
        assoc.acse_timeout = 0
        assoc.acse = ACSE(assoc)
        return
    pending = _Pending(policy, host)
    assoc.acse_timeout = policy.acse_timeout_s
    assoc.bind(evt.EVT_CONN_CLOSE, lambda _event: pending.done())
    assoc.acse = AdmissionACSE(assoc, policy, pending)


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
