"""Group commit of received instances: one writer publishes and records them in batches.

The listener promises that an instance answered with Success is durable: its file fsynced,
its directory entry fsynced and its state row committed, all before the answer. Done one
instance at a time, parallel associations queue for the database's write lock and each pays
its own commit (a WAL fsync) and its own directory fsync. Here each C-STORE handler stages its
bytes (write + fsync under ``tmp/``, in its own thread, so those fsyncs overlap) and hands the
instance to one writer thread, then waits. The writer takes everything that queued up while
it was busy (no timer: while batch N commits, batch N+1 gathers), renames the batch into
place, fsyncs each directory once, records every row in one transaction, and only then wakes
each handler with its own outcome: stored, first copy kept, or the error that refused it.
A failed commit fails every instance of its batch, and their new files are removed first.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import structlog
from sqlalchemy.exc import SQLAlchemyError

from service import metrics
from service.errors import NodeError, StateUnavailableError
from service.pipeline.records import ReceivedInstance
from service.pipeline.spool import Spool, StagedFile
from service.pipeline.store import StateStore

log = structlog.stdlib.get_logger(__name__)


@dataclass(frozen=True)
class Receipt:
    """What became of one instance that reached the writer without an error."""

    #: SHA-256 of the copy already held under this SOP Instance UID when this one differs
    #: from it: nothing was written, the caller quarantines the new bytes. None: stored.
    first_copy_sha256: str | None = None


@dataclass
class _Waiting:
    record: ReceivedInstance
    staged: StagedFile
    answer: Future[Receipt] = field(default_factory=Future)
    #: What the handler will be told, decided during the batch and sent only at its end
    #: (after every file that lost its row is removed). None until then: stored.
    outcome: Receipt | Exception | None = None


@dataclass
class _File:
    """One spool key in a batch: the first instance's staged file, and every instance for it."""

    staged: StagedFile
    existed: bool  # an earlier copy was already there (identical, or an unrecorded orphan)
    sha256: str
    members: list[_Waiting] = field(default_factory=list)


class GroupCommit:
    """The single writer of received instances into the spool and the state database."""

    def __init__(
        self,
        spool: Spool,
        state: StateStore,
        *,
        wait_timeout_s: float,
        max_batch: int = 64,
        idle_exit_s: float = 2.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.spool = spool
        self.state = state
        self.wait_timeout_s = wait_timeout_s
        self.max_batch = max_batch
        self.idle_exit_s = idle_exit_s
        self._queue: list[_Waiting] = []
        self._cond = threading.Condition()
        self._writer_running = False

    def submit(self, record: ReceivedInstance, data: bytes) -> Receipt:
        """Store one instance durably and record it; returns once both are on disk.

        Raises:
            OSError: the bytes could not be written or published (the caller answers with
                out of resources; nothing of the instance stays in the spool).
            StateUnavailableError: its row was not committed (nor is its file kept), or the
                writer did not answer within ``wait_timeout_s``.
        """
        waiting = _Waiting(record, self.spool.stage(record.spool_key, data))
        with self._cond:
            self._queue.append(waiting)
            if not self._writer_running:
                self._writer_running = True
                threading.Thread(target=self._run, name="group-commit", daemon=True).start()
            self._cond.notify()
        try:
            return waiting.answer.result(timeout=self.wait_timeout_s)
        except TimeoutError as exc:
            # Failure is the safe answer: should the batch commit later, the sender's
            # re-send of the same bytes is an identical, harmless duplicate.
            raise StateUnavailableError(
                f"instance not stored within {self.wait_timeout_s:.0f} s (disk or database stalled)"
            ) from exc

    def _run(self) -> None:
        """Writer loop: take what queued up, commit it, repeat; exit after ``idle_exit_s`` idle."""
        idle = False
        try:
            while batch := self._next_batch():
                self._commit_and_answer(batch)
            idle = True  # ``_next_batch`` already cleared the flag, under the lock
        finally:
            if not idle:  # the thread dies: the next submit must start another writer
                with self._cond:
                    self._writer_running = False

    def _next_batch(self) -> list[_Waiting]:
        """What queued up since the last batch (at most ``max_batch``); empty once idle."""
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout=self.idle_exit_s)
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            if not batch:
                self._writer_running = False
            return batch

    def _commit_and_answer(self, batch: list[_Waiting]) -> None:
        """Commit one batch, then wake each of its handlers with its own outcome."""
        try:
            self._commit(batch)
        except Exception as exc:
            # A fault of the writer itself (a bug): not swallowed, every handler of the
            # batch answers with a failure status and the sender keeps its copy.
            log.exception("store_batch_crashed", instances=len(batch))
            for waiting in batch:
                waiting.staged.tmp.unlink(missing_ok=True)
                waiting.outcome = _refusal(exc)
        for waiting in batch:
            if isinstance(waiting.outcome, Exception):
                waiting.answer.set_exception(waiting.outcome)
            else:
                waiting.answer.set_result(waiting.outcome or Receipt())

    def _commit(self, batch: list[_Waiting]) -> None:
        """Publish, record, and remove every new file that did not get its row."""
        files = self._files_to_publish(batch)
        errors = self.spool.publish([file.staged for file in files])
        published = []
        for file, error in zip(files, errors, strict=True):
            if error is None:
                published.append(file)
                continue
            for waiting in file.members:
                waiting.outcome = error
        recorded: set[str] = set()
        try:
            recorded = self._record(published)
        finally:
            # Whatever went wrong, and before any handler hears of it.
            self._discard([f for f in files if not f.existed and f.staged.key not in recorded])
        metrics.store_batch_instances.observe(len(batch))

    def _files_to_publish(self, batch: list[_Waiting]) -> list[_File]:
        """Group the batch by spool key; set aside those whose UID holds other content.

        PS3.3 C.12.1.1.1: a SOP Instance UID names one instance for ever. Other bytes under a
        UID already held (on disk and recorded, or earlier in this batch) are not written.
        """
        files: dict[str, _File] = {}
        for waiting in batch:
            key, sha256 = waiting.record.spool_key, waiting.record.sha256
            known = files.get(key)
            if known is None:
                existed = (self.spool.root / key).exists()
                first = self._recorded_sha256(waiting.record) if existed else None
                if first is not None and first != sha256:
                    waiting.staged.tmp.unlink(missing_ok=True)
                    waiting.outcome = Receipt(first_copy_sha256=first)
                    continue
                known = files[key] = _File(waiting.staged, existed, sha256)
            elif known.sha256 != sha256:
                waiting.staged.tmp.unlink(missing_ok=True)
                waiting.outcome = Receipt(first_copy_sha256=known.sha256)
                continue
            else:
                waiting.staged.tmp.unlink(missing_ok=True)  # identical bytes: one file enough
            known.members.append(waiting)
        return list(files.values())

    def _recorded_sha256(self, record: ReceivedInstance) -> str | None:
        """SHA-256 of the recorded copy of a UID whose file exists (None: an orphan file)."""
        return self.state.instance_sha256(record.sop_instance_uid)

    def _record(self, files: list[_File]) -> set[str]:
        """One transaction for every row of the batch; the keys of the files with a row kept."""
        members = [waiting for file in files for waiting in file.members]
        if not members:
            return set()
        try:
            errors = self.state.record_instances([w.record for w in members])
        except SQLAlchemyError as exc:
            log.warning("store_batch_failed", instances=len(members), error=type(exc).__name__)
            for waiting in members:
                waiting.outcome = _refusal(exc)
            return set()
        for waiting, error in zip(members, errors, strict=True):
            if error is not None:
                waiting.outcome = _refusal(error)
        return {w.record.spool_key for w, e in zip(members, errors, strict=True) if e is None}

    def _discard(self, files: Sequence[_File]) -> None:
        """Remove new files whose every row failed: no instance stays that the node never recorded.

        An earlier copy under the same key stays: it is the identical instance recorded before,
        or an orphan a re-send will replace.
        """
        if not files:
            return
        try:
            self.spool.discard(f.staged.key for f in files)
        except OSError:
            # The senders get a failure and will re-send; that re-send replaces the file
            # left behind (an unrecorded file never blocks one).
            log.exception("unrecorded_files_not_removed", files=len(files))


def _refusal(exc: Exception) -> StateUnavailableError:
    if isinstance(exc, StateUnavailableError):
        return exc
    kind = type(exc).__name__
    what = "state database error" if isinstance(exc, SQLAlchemyError | NodeError) else "error"
    refusal = StateUnavailableError(f"{what}, instance not kept: {kind}")
    refusal.__cause__ = exc
    return refusal
