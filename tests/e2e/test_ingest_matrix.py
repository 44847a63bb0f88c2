"""Every transfer syntax and vendor header case through one whole node, with a table.

One node (listener, dispatcher, Celery worker; the Gaussian backend, deterministic and fast, since
what is measured is the way in, not the model) receives a copy of the same low-dose series per
case, each sent with dcmtk storescu (-R: only the file's own syntax proposed).
For every case the table gives the status storescu saw, what the node did, and the largest
SUV difference of the derived series against the uncompressed, standard-header case,
relative to that case's SUV maximum. Run with ``-s`` to see the table:

    python -m pytest -s -q tests/e2e/test_ingest_matrix.py
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ingest_samples import (
    bed_boundary_shift,
    compress,
    philips_counts,
    restamp,
    signed_with_per_slice_slope,
)
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    UID,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from support import DcmtkPacs
from test_pipeline import wait_state

from service.config import NodeSettings
from service.dicom import pet
from service.ops.dcmtk import dcmtk_env
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore
from service.runtime import AllInOneNode

S = SeriesState
_RESPONSE = re.compile(r"Received Store Response \(([^)]*)\)")
# storescu proposes uncompressed syntaxes unless told which compressed one to propose.
_PROPOSE = {
    JPEGLSLossless: "-xt",
    JPEGLSNearLossless: "-xu",
    JPEGLosslessSV1: "-xs",
    RLELossless: "-xr",
    JPEG2000Lossless: "-xv",
    JPEG2000: "-xw",
}


@dataclass(frozen=True)
class Case:
    """One row: how the copy is made and what the node must do with it."""

    name: str
    syntax: UID | None = None
    mutate: Callable[[Dataset, int], None] | None = None
    expected: SeriesState = S.DONE
    suv_tolerance: float = 1e-3  # of the reference SUV maximum


def _lutetium(ds: Dataset, _index: int) -> None:
    drug = ds.RadiopharmaceuticalInformationSequence[0]
    code = drug.RadionuclideCodeSequence[0]
    code.CodeValue, code.CodingSchemeDesignator = "447553000", "SCT"
    code.CodeMeaning = "^177^Lutetium"
    drug.RadionuclideHalfLife = "574300"


def _dynamic(ds: Dataset, _index: int) -> None:
    ds.SeriesType = ["DYNAMIC", "IMAGE"]


def _no_weight(ds: Dataset, _index: int) -> None:
    ds.PatientWeight = "0"


def _injection_after_series(ds: Dataset, _index: int) -> None:
    drug = ds.RadiopharmaceuticalInformationSequence[0]
    drug.RadiopharmaceuticalStartDateTime = f"{ds.SeriesDate}235900"
    drug.RadiopharmaceuticalStartTime = "235900"


def _start_time_only(ds: Dataset, _index: int) -> None:
    del ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime


def _admin(ds: Dataset, _index: int) -> None:
    """Values decay-corrected to injection: same SUV, Bq/ml scaled up by the decay."""
    start = pet.suv_bw_factor(ds)
    ds.DecayCorrection = pet.DECAY_CORRECTION_ADMIN
    ds.RescaleSlope = f"{float(ds.RescaleSlope) * start / pet.suv_bw_factor(ds):.10g}"


CASES = [
    Case("uncompressed (reference)"),
    Case("JPEG-LS lossless (dcmcjpls)", JPEGLSLossless),
    Case("JPEG lossless SV1 (dcmcjpeg +e1)", JPEGLosslessSV1),
    Case("RLE lossless (dcmcrle)", RLELossless),
    Case("JPEG 2000 lossless (openjpeg)", JPEG2000Lossless),
    Case("JPEG-LS near-lossless (dcmcjpls +en)", JPEGLSNearLossless, suv_tolerance=0.2),
    Case("JPEG 2000 lossy 5:1 (openjpeg)", JPEG2000, suv_tolerance=0.5),
    Case("bed boundary +0.1 mm", mutate=bed_boundary_shift(0.1, 3), suv_tolerance=0.05),
    Case("signed 16-bit, per-slice slope", mutate=signed_with_per_slice_slope),
    Case("Philips CNTS + 7053 factors", mutate=philips_counts(2.5)),
    Case("DecayCorrection ADMIN", mutate=_admin),
    Case("RadiopharmaceuticalStartTime only", mutate=_start_time_only),
    Case("Lu-177 stored as PT", mutate=_lutetium, expected=S.IGNORED),
    Case("SeriesType DYNAMIC", mutate=_dynamic, expected=S.REJECTED),
    Case("PatientWeight 0", mutate=_no_weight, expected=S.REJECTED),
    Case("injection after series time", mutate=_injection_after_series, expected=S.REJECTED),
]


def _send(folder: Path, port: int, syntax: UID | None) -> str:
    """storescu -R proposing the files' own syntax, verbose; the statuses it received."""
    propose = [_PROPOSE[syntax]] if syntax is not None else []
    done = subprocess.run(
        [
            *("/usr/bin/storescu", "-v", "-aet", "SCANNER", "-aec", "UNIPET", "+sd", "-R"),
            *propose,
            *("127.0.0.1", str(port), str(folder)),
        ],
        env=dcmtk_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    statuses = sorted(set(_RESPONSE.findall(done.stdout + done.stderr)))
    return "/".join(statuses) or f"exit {done.returncode}"


def _suv(paths: list[Path]) -> np.ndarray:
    slices = sorted((dcmread(p) for p in paths), key=pet.slice_position_mm)
    return np.stack([d.pixel_array * float(d.RescaleSlope) * pet.suv_bw_factor(d) for d in slices])


@pytest.mark.slow
def test_every_syntax_and_header_case_end_to_end(
    node_factory: Callable[..., tuple[AllInOneNode, NodeSettings]],
    pacs: DcmtkPacs,
    study_copy: Path,
    tmp_path: Path,
) -> None:
    _node, settings = node_factory(pacs.port, model={"backend": "gaussian"})
    state = StateStore(settings.database_url)
    source = study_copy / "drf20"
    rows: list[tuple[Case, str, str, str]] = []
    uids: dict[str, str] = {}
    for index, case in enumerate(CASES):
        folder = restamp(source, tmp_path / f"case{index}", f"case{index}", case.mutate)
        if case.syntax is not None:
            compress(folder, case.syntax)
        uids[case.name] = str(dcmread(next(folder.glob("*.dcm"))).SeriesInstanceUID)
        rows.append((case, _send(folder, settings.listener.port, case.syntax), "", ""))
    finals = {
        case.name: wait_state(state, uids[case.name], {S.DONE, S.DEAD, S.IGNORED, S.REJECTED}, 150)
        for case in CASES
    }
    outputs = {
        case.name: [
            p
            for p in pacs.files()
            if dcmread(p, stop_before_pixels=True).SeriesInstanceUID
            == state.get(uids[case.name]).output_series_uid
        ]
        for case in CASES
        if finals[case.name] is S.DONE
    }
    reference = _suv(outputs[CASES[0].name])
    table = [
        "| case | storescu saw | node | SUV diff vs reference (max, mean; % of SUVmax) |",
        "| --- | --- | --- | --- |",
    ]
    failures = []
    for case, status, _, _ in rows:
        series = state.get(uids[case.name])
        did = f"{finals[case.name].value}: {series.state_reason[:90]}"
        diff = "-"
        if case.name in outputs:
            suv = _suv(outputs[case.name])
            error = np.abs(suv - reference) / float(reference.max())
            diff = f"{100 * error.max():.4f} %, {100 * error.mean():.4f} %"
            if error.max() > case.suv_tolerance:
                failures.append(f"{case.name}: {diff}")
            lossy = dcmread(outputs[case.name][0]).get("LossyImageCompression")
            if lossy:
                did += f"; output LossyImageCompression {lossy}"
        if finals[case.name] is not case.expected:
            failures.append(f"{case.name}: {finals[case.name].value}")
        table.append(f"| {case.name} | {status} | {did} | {diff} |")
    print("\n" + "\n".join(table))
    assert not failures, failures
