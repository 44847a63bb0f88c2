"""Write the quality report of one derived series: SR, encapsulated PDF and a JSON digest.

The numbers come from the received series and the derived series as stored: read back from
its files, or, in a worker, computed as the writer stores them (``writer.stored_volume``)
while the files are written, so they describe exactly what is sent either way. The folder is
replaced as a whole (staging folder, then rename), so a sender or the status page never sees
half a report.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog
from pydicom.dataset import Dataset

from service.dicom.provenance import AlgorithmIdentity
from service.dicom.quality import ModelCardFacts, QualityReport, assess_quality
from service.dicom.report_document import build_encapsulated_pdf
from service.dicom.report_identity import ReportTarget, ReportTimes
from service.dicom.report_pdf import render_quality_pdf
from service.dicom.report_sr import build_quality_sr
from service.dicom.volume import PetVolume, load_pet_volume
from service.dicom.writer import save_instance

__all__ = [
    "PDF_NAME",
    "SUMMARY_NAME",
    "MeasuredSeries",
    "QualityReportFiles",
    "measure_quality",
    "read_summary",
    "report_dicom_paths",
    "report_dir",
    "write_measured_report",
    "write_quality_report",
]

log = structlog.stdlib.get_logger(__name__)

#: File names inside a report folder; the PDF name is what the status page links to.
PDF_NAME = "report.pdf"
SUMMARY_NAME = "summary.json"


@dataclass(frozen=True)
class QualityReportFiles:
    """What was written: the two DICOM instances (sent), the bare PDF and the digest."""

    report: QualityReport
    sr_path: Path
    pdf_instance_path: Path
    pdf_path: Path
    directory: Path

    @property
    def dicom_paths(self) -> tuple[Path, Path]:
        """The instances to send with the derived series."""
        return (self.sr_path, self.pdf_instance_path)


def report_dir(series_dir: Path) -> Path:
    """The report folder of a derived series folder: its sibling ``<name>.report``.

    A sibling, not a subfolder: the writer replaces the series folder only when it holds
    exactly the instance files of an identical earlier run.
    """
    return series_dir.with_name(f"{series_dir.name}.report")


def report_dicom_paths(directory: Path) -> list[Path]:
    """The SR and PDF instances of a report folder (none when there is no report)."""
    return sorted(directory.glob("*.dcm")) if directory.is_dir() else []


def read_summary(directory: Path) -> dict[str, object] | None:
    """The JSON digest of a report folder, or None when there is no readable report."""
    try:
        data = json.loads((directory / SUMMARY_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _replace(staging: Path, out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)


def measure_quality(
    received: PetVolume,
    derived_bqml: npt.NDArray[np.floating],
    *,
    drf_estimate: float | None,
    clipped_voxels: int,
    card: ModelCardFacts | None,
    change_limit_pct: float = 10.0,
) -> QualityReport:
    """The numbers of the report: ``assess_quality`` of the received series against the
    derived series as stored (its files' Bq/ml, or ``writer.stored_volume`` of them).

    NumPy and SciPy do the work with the interpreter lock released, so a worker measures in
    a background thread while the same job encodes and writes the series.

    Raises:
        PetHeaderError: The received headers do not allow SUVbw.
        ValueError: Received and derived series are not on one grid.
    """
    return assess_quality(
        received.bqml,
        derived_bqml,
        received.datasets,
        received.spacing_mm,
        drf_estimate=drf_estimate,
        card=card,
        change_limit_pct=change_limit_pct,
        clipped_voxels=clipped_voxels,
    )


def write_quality_report(
    received: PetVolume,
    derived_paths: tuple[Path, ...],
    algorithm: AlgorithmIdentity,
    out_dir: Path,
    *,
    drf_estimate: float | None,
    clipped_voxels: int,
    card: ModelCardFacts | None,
    times: ReportTimes,
    change_limit_pct: float = 10.0,
) -> QualityReportFiles:
    """Measure, draw and write the quality report of a derived series read from its files.

    Raises:
        PetHeaderError: The received headers do not allow SUVbw, or the derived files do
            not load as one series.
        ValueError: Received and derived series are not on one grid.
    """
    derived = load_pet_volume(list(derived_paths))
    report = measure_quality(
        received,
        derived.bqml,
        drf_estimate=drf_estimate,
        clipped_voxels=clipped_voxels,
        card=card,
        change_limit_pct=change_limit_pct,
    )
    return write_measured_report(
        report,
        received,
        MeasuredSeries(tuple(derived.datasets), derived.bqml),
        algorithm,
        out_dir,
        card=card,
        times=times,
    )


@dataclass(frozen=True)
class MeasuredSeries:
    """The derived series a report describes: headers in slice order, Bq/ml as stored."""

    headers: tuple[Dataset, ...]
    bqml: npt.NDArray[np.floating]


def write_measured_report(
    report: QualityReport,
    received: PetVolume,
    derived: MeasuredSeries,
    algorithm: AlgorithmIdentity,
    out_dir: Path,
    *,
    card: ModelCardFacts | None,
    times: ReportTimes,
) -> QualityReportFiles:
    """Draw and write the SR, PDF and digest of a measured report into ``out_dir``."""
    target = ReportTarget(
        derived_headers=derived.headers,
        received_headers=tuple(received.datasets),
        algorithm=algorithm,
        now=datetime.now(),
    )
    sr = build_quality_sr(report, target)
    factor = report.suv_per_bqml
    pdf = render_quality_pdf(
        report,
        received.bqml * np.float32(factor),
        derived.bqml * np.float32(factor),
        received.spacing_mm,
        target,
        times,
        card,
    )
    document = build_encapsulated_pdf(pdf, target)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)
    try:
        sr_name, pdf_instance_name = f"{sr.SOPInstanceUID}.dcm", f"{document.SOPInstanceUID}.dcm"
        save_instance(sr, staging / sr_name)
        save_instance(document, staging / pdf_instance_name)
        (staging / PDF_NAME).write_bytes(pdf)
        summary = {
            **report.summary(),
            "sr_sop_instance_uid": str(sr.SOPInstanceUID),
            "pdf_sop_instance_uid": str(document.SOPInstanceUID),
        }
        (staging / SUMMARY_NAME).write_text(json.dumps(summary, indent=2))
        _replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    log.info(
        "quality_report_written",
        series_uid=target.derived_series_uid,
        reference=report.reference.method.value,
        foci=len(report.foci),
        flagged=report.flagged_foci,
    )
    return QualityReportFiles(
        report=report,
        sr_path=out_dir / sr_name,
        pdf_instance_path=out_dir / pdf_instance_name,
        pdf_path=out_dir / PDF_NAME,
        directory=out_dir,
    )
