"""Generated bad instances for fuzzing the C-STORE path (tests and benchmarks share them).

Each example starts from one valid simulated PET slice given fresh UIDs, then applies one
kind of damage real senders produce: truncation, flipped bytes, a wrong VR, absurd image
dimensions, a SOP class that differs from the negotiated one, illegal UIDs, instances that
mix series, a compressed transfer syntax over uncompressed pixels, a huge element, unusable
PET values. ``FuzzClient`` sends the bytes unchanged over a real association.
"""

from __future__ import annotations

import copy
import io
import struct
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hypothesis import reject
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    PositronEmissionTomographyImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]  # generated at import

PET = PositronEmissionTomographyImageStorage

#: C-STORE statuses pynetdicom itself answers when a handler raised or returned nonsense:
#: a crash of ours, never acceptable.
CRASH_STATUSES = frozenset({0xC211, 0xC212, 0xC213})

ILLEGAL_UIDS = [
    "",
    "../../etc/passwd",
    "1.2.abc",
    "1.02.3",
    "1..2",
    ".1.2",
    "1.2.",
    "1" * 65,
    "1.2.3\\1.2.4",
    "1.2.3 ",
    "\uff11.\uff12",  # full-width digits
]


def _encode(ds: Dataset) -> bytes:
    """File bytes; damage pydicom itself refuses to encode is not an example."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds.save_as(buffer, enforce_file_format=False)
        except (ValueError, TypeError, UnicodeError, OverflowError, OSError, struct.error):
            reject()
    return buffer.getvalue()


def _fresh(base: Dataset) -> Dataset:
    ds = copy.deepcopy(base)  # element objects are shared by shallow copies
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


Edit = Callable[[Dataset], None]


def _set(keyword: str, value: object) -> Edit:
    def edit(ds: Dataset) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            setattr(ds, keyword, value)

    return edit


def _delete(keyword: str) -> Edit:
    def edit(ds: Dataset) -> None:
        if keyword in ds:
            delattr(ds, keyword)

    return edit


def _wrong_vr(keyword: str, vr: str, value: object) -> Edit:
    def edit(ds: Dataset) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.add_new(ds.data_element(keyword).tag, vr, value)  # type: ignore[union-attr]

    return edit


def _huge(size: int) -> Edit:
    def edit(ds: Dataset) -> None:
        ds.add_new(0x00091010, "OB", b"\x5a" * size)
        ds.ImageComments = "x" * min(size, 10240)

    return edit


def _sop_class(uid: str) -> Edit:
    def edit(ds: Dataset) -> None:
        ds.SOPClassUID = uid  # file meta (what is negotiated) stays PET

    return edit


def _uid(keyword: str, value: str) -> Edit:
    def edit(ds: Dataset) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # The file meta (hence the C-STORE request) keeps the valid UID: an illegal UID
            # in the command set would be our own SCU's bug, not the listener's input.
            setattr(ds, keyword, value)

    return edit


def _compressed_header(ds: Dataset) -> None:
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless


def _mixed_series(ds: Dataset) -> None:
    """Same series UID as the last mixed example, another study and matrix."""
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.2.1143.424242"
    ds.StudyInstanceUID = generate_uid()


def _edits() -> st.SearchStrategy[tuple[str, Edit]]:
    def labelled(
        label: str, strategy: st.SearchStrategy[Edit]
    ) -> st.SearchStrategy[tuple[str, Edit]]:
        return st.tuples(st.just(label), strategy)

    number = st.sampled_from(["-1", "0", "NaN", "inf", "-inf", "abc", "1e400", ""])
    return st.one_of(
        labelled(
            "dimensions",
            st.builds(_set, st.sampled_from(["Rows", "Columns"]), st.integers(0, 65535)),
        ),
        labelled(
            "bits",
            st.builds(
                _set, st.just("BitsAllocated"), st.sampled_from([0, 1, 7, 8, 12, 24, 32, 64])
            ),
        ),
        labelled(
            "frames",
            st.builds(_set, st.just("NumberOfFrames"), st.sampled_from(["0", "-3", "2", "x"])),
        ),
        labelled(
            "sop_class",
            st.builds(
                _sop_class,
                st.sampled_from([CTImageStorage, SecondaryCaptureImageStorage, "1.2.3.4", ""]),
            ),
        ),
        labelled(
            "uid",
            st.builds(
                _uid,
                st.sampled_from(["SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"]),
                st.sampled_from(ILLEGAL_UIDS),
            ),
        ),
        labelled(
            "uid_text",
            st.builds(
                _uid,
                st.sampled_from(["SeriesInstanceUID", "StudyInstanceUID"]),
                st.text(max_size=80),
            ),
        ),
        labelled(
            "wrong_vr",
            st.sampled_from(
                [
                    _wrong_vr("Rows", "LO", "forty"),
                    _wrong_vr("RescaleSlope", "US", 3),
                    _wrong_vr("PatientWeight", "UL", 70),
                    _wrong_vr("ImagePositionPatient", "LO", "a\\b\\c"),
                    _wrong_vr("SeriesInstanceUID", "OB", b"\x00\x01"),
                ]
            ),
        ),
        labelled(
            "pet_value",
            st.builds(
                _set,
                st.sampled_from(
                    ["RescaleSlope", "RescaleIntercept", "PatientWeight", "NumberOfSlices"]
                ),
                number,
            ),
        ),
        labelled(
            "missing",
            st.builds(
                _delete,
                st.sampled_from(
                    [
                        "ImagePositionPatient",
                        "ImageOrientationPatient",
                        "PixelSpacing",
                        "RescaleSlope",
                        "Modality",
                        "PixelData",
                        "Rows",
                        "SeriesInstanceUID",
                        "RadiopharmaceuticalInformationSequence",
                    ]
                ),
            ),
        ),
        labelled(
            "huge", st.builds(_huge, st.sampled_from([64 * 1024, 1024 * 1024, 3 * 1024 * 1024]))
        ),
        labelled("compressed", st.just(_compressed_header)),
        labelled("mixed_series", st.just(_mixed_series)),
        labelled(
            "patient_name",
            st.builds(_set, st.just("PatientName"), st.text(min_size=65, max_size=200)),
        ),
    )


@st.composite
def bad_instances(draw: st.DrawFn, base: Dataset) -> tuple[str, bytes]:
    """(kind of damage, file bytes) for one generated bad instance."""
    ds = _fresh(base)
    kind = draw(st.sampled_from(["truncated", "flipped", "edited", "edited"]))
    if kind == "edited":
        label, edit = draw(_edits())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about what we break on purpose
            try:
                edit(ds)
            except (ValueError, TypeError, OverflowError):
                reject()  # pydicom refuses to hold such a value at all
        return label, _encode(ds)
    data = _encode(_fresh(base))
    meta_end = 132 + 12 + int.from_bytes(data[140:144], "little")
    # Offsets are drawn independent of the encoded length (fresh UIDs vary in length), so
    # every run of an example draws the same choices.
    span = len(data) - meta_end
    if kind == "truncated":
        return kind, data[: meta_end + draw(st.integers(0, 10**6)) % span]
    flips = draw(
        st.lists(st.tuples(st.integers(0, 2999), st.integers(0, 255)), min_size=1, max_size=8)
    )
    body = bytearray(data)
    for offset, value in flips:
        body[meta_end + offset % min(span, 3000)] = value
    return kind, bytes(body)


@dataclass
class Outcome:
    """What one C-STORE of a bad instance got back."""

    kind: str
    status: int | None  # None: not sent (no presentation context, as for compressed syntaxes)


class FuzzClient:
    """One association to the listener, reopened whenever the node ends it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.assoc: Association | None = None
        self.folder = Path(tempfile.mkdtemp(prefix="fuzz-"))

    def _associate(self) -> Association:
        if self.assoc is None or not self.assoc.is_established:
            ae = AE(ae_title="FUZZER")
            ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
            for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless):
                ae.add_requested_context(PET, syntax)
            ae.add_requested_context(Verification)
            self.assoc = ae.associate("127.0.0.1", self.port, ae_title="UNIPET")
        return self.assoc

    def store(self, kind: str, data: bytes) -> Outcome:
        """Send the bytes as they are (pynetdicom's chunked mode: no re-encoding)."""
        path = self.folder / "instance.dcm"
        path.write_bytes(data)
        saved = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = True
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                status = self._associate().send_c_store(path)
        except (ValueError, AttributeError, KeyError, TypeError, EOFError, OSError):
            return Outcome(kind, None)  # our own SCU cannot even send it
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = saved
        return Outcome(kind, int(status.Status) if "Status" in status else None)

    def echo(self) -> int:
        """C-ECHO status on the open association (the node still answers)."""
        status = self._associate().send_c_echo()
        return int(status.Status) if "Status" in status else -1

    def echo_fresh(self) -> int:
        """C-ECHO status on a new association (the open one is given up)."""
        if self.assoc is not None:
            self.assoc.abort()
        self.assoc = None
        return self.echo()

    def close(self) -> None:
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()


def base_instance(path: Path) -> Dataset:
    """The valid slice every example starts from."""
    return dcmread(path)


@dataclass
class FuzzReport:
    """Counts by (kind, status) and every broken promise found."""

    counts: dict[tuple[str, str], int]
    problems: list[str]
    examples: int
    echo_retried: int = 0  # C-ECHO unanswered on the open association, answered on a new one


def _status_label(status: int | None) -> str:
    return "not sent" if status is None else f"0x{status:04X}"


def run_fuzz(
    port: int,
    spool_root: Path,
    instance_recorded: Callable[[str], bool],
    base: Dataset,
    examples: int,
) -> FuzzReport:
    """Send ``examples`` generated bad instances; check each outcome and C-ECHO after it.

    Promises checked: no crash status; a failure status leaves exactly one new quarantine
    record with a reason (except Out of Resources, never kept); a Success status means the
    instance is recorded in the state database; the node answers C-ECHO after every one.
    """
    from hypothesis import HealthCheck, given, settings

    client = FuzzClient(port)
    quarantine = spool_root / "quarantine"
    counts: dict[tuple[str, str], int] = {}
    problems: list[str] = []
    seen = [0]
    dropped = [0]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(bad_instances(base))
    def one(example: tuple[str, bytes]) -> None:
        kind, data = example
        seen[0] += 1
        before = len(list(quarantine.glob("*.json")))
        outcome = client.store(kind, data)
        key = (kind, _status_label(outcome.status))
        counts[key] = counts.get(key, 0) + 1
        problems.extend(_check(outcome, data, quarantine, before, instance_recorded))
        if client.echo() != 0x0000:
            dropped[0] += 1  # counted and reported: the association did not answer
            if client.echo_fresh() != 0x0000:
                problems.append(f"{kind}: no C-ECHO answer after status {key[1]}")

    try:
        one()
    finally:
        client.close()
    return FuzzReport(counts, problems, seen[0], dropped[0])


def _check(
    outcome: Outcome,
    data: bytes,
    quarantine: Path,
    before: int,
    instance_recorded: Callable[[str], bool],
) -> list[str]:
    status = outcome.status
    if status is None:
        return []
    if status in CRASH_STATUSES:
        return [f"{outcome.kind}: crash status 0x{status:04X}"]
    if status == 0x0000:
        sop = str(dcmread(io.BytesIO(data)).SOPInstanceUID)
        return [] if instance_recorded(sop) else [f"{outcome.kind}: Success but not recorded"]
    if status >> 8 == 0xA7:  # Out of Resources: the sender keeps it and retries
        return []
    records = sorted(quarantine.glob("*.json"))
    if len(records) != before + 1:
        return [f"{outcome.kind}: status 0x{status:04X} but {len(records) - before} quarantined"]
    reason = records[-1].read_text()
    return (
        []
        if '"reason": "' in reason and '"reason": ""' not in reason
        else [f"{outcome.kind}: no reason"]
    )
