"""The quality report step of a denoise job, and which report files go to a destination.

Kept beside ``jobs.py`` so the job reads as before plus two calls: ``start_report`` before
the series is written (the numbers are measured meanwhile), ``finish_report`` after it. A
report that cannot be made (headers that allow the images but not the measurements, an
unforeseen volume) never costs the derived series: it is logged and the series goes out
without its report. Disk errors are not caught: the job's retry policy owns them.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog

from service.config import DestinationSettings
from service.dicom.quality import QualityReport
from service.dicom.report import (
    MeasuredSeries,
    measure_quality,
    report_dicom_paths,
    report_dir,
    write_measured_report,
)
from service.dicom.report_identity import ReportTimes
from service.dicom.volume import PetVolume
from service.dicom.writer import DerivedSeries, stored_volume
from service.errors import PetHeaderError
from service.pipeline.inference import DenoiseResult
from service.pipeline.records import SeriesView
from service.pipeline.spool import Spool
from service.pipeline.worker_context import WorkerContext

__all__ = ["ReportInProgress", "finish_report", "report_paths_for", "start_report"]

log = structlog.stdlib.get_logger(__name__)


@dataclass(frozen=True)
class ReportInProgress:
    """A quality report whose numbers are being measured in a background thread.

    Measuring is NumPy and SciPy work, which runs with the interpreter lock released, while
    encoding and writing the series is Python work that holds it: started before the write,
    the measurement costs the job little more than the write alone (``docs/deployment.md``,
    "Time per series").
    """

    series: SeriesView
    volume: PetVolume
    result: DenoiseResult
    measured: Future[tuple[QualityReport, npt.NDArray[np.float32]]]


def start_report(
    ctx: WorkerContext, series: SeriesView, volume: PetVolume, result: DenoiseResult
) -> ReportInProgress | None:
    """Start measuring the quality report of a denoised series, if reports are configured.

    The derived values measured are ``stored_volume`` of the result: what the writer stores
    and a reader of the files gets back, so the report describes exactly what is sent.
    """
    output = ctx.settings.output
    if not output.quality_report:
        return None
    card = ctx.denoiser.card

    def measure() -> tuple[QualityReport, npt.NDArray[np.float32]]:
        stored = stored_volume(result.volume_bqml)
        report = measure_quality(
            volume,
            stored,
            drf_estimate=result.drf_estimate,
            clipped_voxels=int(np.count_nonzero(result.volume_bqml < 0.0)),
            card=card,
            change_limit_pct=output.quality_change_limit_pct,
        )
        return report, stored

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unipet-report")
    try:
        return ReportInProgress(series, volume, result, pool.submit(measure))
    finally:
        pool.shutdown(wait=False)  # the thread ends with its one task


def finish_report(ctx: WorkerContext, started: ReportInProgress, derived: DerivedSeries) -> None:
    """Wait for the measurement, then write the SR + PDF report next to the derived series."""
    try:
        report, stored = started.measured.result()
        write_measured_report(
            report,
            started.volume,
            MeasuredSeries(derived.headers, stored),
            started.result.algorithm,
            report_dir(derived.directory),
            card=ctx.denoiser.card,
            times=ReportTimes(
                received_at=started.series.first_received_at,
                completed_at=started.series.completed_at,
                inference_s=started.result.seconds,
                written_at=time.time(),
            ),
        )
    except (PetHeaderError, ValueError) as exc:
        log.error(
            "quality_report_failed",
            series_uid=started.series.series_instance_uid,
            error=f"{type(exc).__name__}: {exc}",
        )


def report_paths_for(spool: Spool, output_key: str, destination: DestinationSettings) -> list[Path]:
    """The report instances to send with the series to ``destination`` (maybe none)."""
    if not destination.send_quality_report:
        return []
    return report_dicom_paths(report_dir(spool.path_of(output_key)))
