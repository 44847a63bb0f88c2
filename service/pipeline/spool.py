"""The on-disk spool: where received instances, derived series and refusals live.

Layout under the spool root (UIDs are validated before they become path parts)::

    incoming/<study_uid>/<series_uid>/<sop_uid>.dcm     received instances, never modified
    outgoing/<series_uid>/<algorithm_sha256[:16]>/      derived series written by the worker
    quarantine/<utc-time>-<id>.dcm + .json              refused bytes with the reason
    tmp/                                                half-written files (same filesystem)

Every write is temp file + fsync + rename + directory fsync, so a power cut leaves either the
old state or the new one, never a torn file (the C-STORE success status is only sent after).
Received instances take that path in two halves: ``stage`` (write and fsync under ``tmp/``)
runs in each association's thread, so parallel fsyncs overlap, and ``publish`` renames a whole
batch and fsyncs each directory it touched once (``service.pipeline.group_commit``).
Workers address files by *key* (a path relative to the root), never by absolute path, so the
same key works on another host that mounts the spool elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from service.dicom.uids import validate_uid
from service.durable import fsync_path

INCOMING = "incoming"
OUTGOING = "outgoing"
QUARANTINE = "quarantine"
TMP = "tmp"

#: Directory fsyncs ``publish`` runs at once (a batch rarely spans more series than this).
_FSYNC_THREADS = 8


@dataclass(frozen=True)
class StoredFile:
    """A file durably written to the spool."""

    key: str
    sha256: str
    size_bytes: int
    replaced: bool = False  # a file with this key was there before (an identical re-send)


@dataclass(frozen=True)
class StagedFile:
    """Received bytes written and fsynced under ``tmp/``, not yet under their key."""

    key: str
    tmp: Path


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _fsync_pool() -> ThreadPoolExecutor:
    """Threads for the directory fsyncs of ``publish``, one set per process, made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=_FSYNC_THREADS, thread_name_prefix="spool-fsync")
        return _pool


def _fsync_error(directory: Path) -> OSError | None:
    try:
        fsync_path(directory)
    except OSError as exc:
        return exc
    return None


def _make_parents(directory: Path) -> list[Path]:
    """Create ``directory`` and missing parents; the ones created, outermost first."""
    missing: list[Path] = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
    return missing[::-1]


class Spool:
    """Local (or NFS-mounted) spool folder; see the module docstring for the layout."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        for part in (INCOMING, OUTGOING, QUARANTINE, TMP):
            (self.root / part).mkdir(parents=True, exist_ok=True)

    def path_of(self, key: str) -> Path:
        """Absolute path of a spool key; refuses keys that leave the spool."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"spool key escapes the spool root: {key!r}")
        return path

    def key_of(self, path: Path) -> str:
        """Spool key (relative path) of a file inside the spool."""
        return path.resolve().relative_to(self.root).as_posix()

    def _atomic_write(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.root / TMP / f"{uuid.uuid4().hex}.part"
        with tmp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)
        fsync_path(target.parent)

    def incoming_key(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        """Spool key of a received instance (UIDs validated: they become path parts).

        Built from its parts rather than by resolving a path: a validated UID has no ``/`` or
        ``..``, and resolving costs a stat per path component on every C-STORE.
        """
        parts = (
            INCOMING,
            validate_uid(study_uid, "StudyInstanceUID"),
            validate_uid(series_uid, "SeriesInstanceUID"),
            validate_uid(sop_uid, "SOPInstanceUID") + ".dcm",
        )
        return "/".join(parts)

    def incoming_path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        """Where a received instance lives (UIDs validated: they become path parts)."""
        return self.root / self.incoming_key(study_uid, series_uid, sop_uid)

    def stage(self, key: str, data: bytes) -> StagedFile:
        """Write received bytes under ``tmp/`` and fsync them; ``publish`` moves them to ``key``.

        The caller is the association's own thread: fsyncs of parallel associations then
        overlap in the kernel instead of queueing behind one writer.
        """
        tmp = self.root / TMP / f"{uuid.uuid4().hex}.part"
        try:
            with tmp.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        return StagedFile(key, tmp)

    def publish(self, staged: Sequence[StagedFile]) -> list[OSError | None]:
        """Rename staged files to their keys, then fsync every directory touched, once each.

        A directory created on the way (a new study or series folder) is itself an entry in
        its parent, so the parent is fsynced too. Returns, per file, None once its name is
        durable, or the error that left it unpublished (its temp file is removed).
        """
        errors: list[OSError | None] = [None] * len(staged)
        touched: dict[Path, list[int]] = {}
        for index, item in enumerate(staged):
            target = self.root / item.key
            try:
                created = _make_parents(target.parent)
                item.tmp.replace(target)
            except OSError as exc:
                item.tmp.unlink(missing_ok=True)
                errors[index] = exc
                continue
            for directory in (target.parent, *(folder.parent for folder in created)):
                touched.setdefault(directory, []).append(index)
        # In parallel: the filesystem journals concurrent fsyncs in one commit, where one
        # after the other each waits for its own (eight series folders: ~1.5 ms, not ~28 ms).
        if len(touched) == 1:
            synced = [_fsync_error(next(iter(touched)))]
        else:
            synced = list(_fsync_pool().map(_fsync_error, touched))
        for (_directory, indices), error in zip(touched.items(), synced, strict=True):
            for index in indices:
                errors[index] = errors[index] or error
        return errors

    def discard(self, keys: Iterable[str]) -> None:
        """Delete published files whose record failed, fsyncing each directory once.

        No orphan may stay: the sender got a failure and will send the instance again.
        """
        directories: set[Path] = set()
        for key in keys:
            path = self.root / key
            path.unlink(missing_ok=True)
            directories.add(path.parent)
        for directory in directories:
            fsync_path(directory)

    def store_incoming(
        self, study_uid: str, series_uid: str, sop_uid: str, data: bytes
    ) -> StoredFile:
        """Durably store one received instance (bytes as received, file meta included)."""
        target = self.incoming_path(study_uid, series_uid, sop_uid)
        replaced = target.exists()
        self._atomic_write(target, data)
        return StoredFile(
            key=self.key_of(target),
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            replaced=replaced,
        )

    def remove(self, key: str) -> None:
        """Delete one file (an instance whose recording failed, so no orphan stays)."""
        path = self.path_of(key)
        path.unlink(missing_ok=True)
        fsync_path(path.parent)

    def quarantine(self, data: bytes, reason: str, details: dict[str, str]) -> Path:
        """Keep refused bytes with the reason beside them; nothing refused is thrown away."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        stem = f"{stamp}-{uuid.uuid4().hex[:12]}"
        target = self.root / QUARANTINE / f"{stem}.dcm"
        self._atomic_write(target, data)
        record = {"reason": reason, "file": target.name, "quarantined_at": stamp, **details}
        self._atomic_write(target.with_suffix(".json"), json.dumps(record, indent=2).encode())
        return target

    def quarantined(self) -> list[dict[str, str]]:
        """Reasons of every quarantined file, oldest first."""
        records = []
        for meta in sorted((self.root / QUARANTINE).glob("*.json")):
            records.append(json.loads(meta.read_text()))
        return records

    def outgoing_dir(self, series_uid: str, algorithm_sha256: str) -> Path:
        """Folder for the derived series of one input series and one algorithm."""
        validate_uid(series_uid, "SeriesInstanceUID")
        return self.root / OUTGOING / series_uid / algorithm_sha256[:16]

    def free_bytes(self) -> int:
        """Free bytes on the spool's filesystem (admission control watches this)."""
        return shutil.disk_usage(self.root).free

    def used_fraction(self) -> float:
        """Used fraction of the spool's filesystem."""
        usage = shutil.disk_usage(self.root)
        return usage.used / usage.total if usage.total else 1.0
