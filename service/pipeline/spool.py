"""The on-disk spool: where received instances, derived series and refusals live.

Layout under the spool root (UIDs are validated before they become path parts)::

    incoming/<study_uid>/<series_uid>/<sop_uid>.dcm     received instances, never modified
    outgoing/<series_uid>/<algorithm_sha256[:16]>/      derived series written by the worker
    quarantine/<utc-time>-<id>.dcm + .json              refused bytes with the reason
    tmp/                                                half-written files (same filesystem)

Every write is temp file + fsync + rename + directory fsync, so a power cut leaves either the
old state or the new one, never a torn file (the C-STORE success status is only sent after).
Workers address files by *key* (a path relative to the root), never by absolute path, so the
same key works on another host that mounts the spool elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from service.dicom.uids import validate_uid

INCOMING = "incoming"
OUTGOING = "outgoing"
QUARANTINE = "quarantine"
TMP = "tmp"


@dataclass(frozen=True)
class StoredFile:
    """A file durably written to the spool."""

    key: str
    sha256: str
    size_bytes: int
    replaced: bool = False  # a file with this key was there before (an identical re-send)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
        _fsync_directory(target.parent)

    def incoming_path(self, study_uid: str, series_uid: str, sop_uid: str) -> Path:
        """Where a received instance lives (UIDs validated: they become path parts)."""
        parts = [
            validate_uid(study_uid, "StudyInstanceUID"),
            validate_uid(series_uid, "SeriesInstanceUID"),
            validate_uid(sop_uid, "SOPInstanceUID") + ".dcm",
        ]
        return self.root / INCOMING / Path(*parts)

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
        _fsync_directory(path.parent)

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
