"""The quality report step of a denoise job, and which report files go to a destination.

Kept beside ``jobs.py`` so the job reads as before plus one call. A report that cannot be
made (headers that allow the images but not the measurements, an unforeseen volume) never
costs the derived series: it is logged and the series goes out without its report. Disk
errors are not caught: the job's retry policy owns them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import structlog

from service.config import DestinationSettings
from service.dicom.report import report_dicom_paths, report_dir, write_quality_report
from service.dicom.report_identity import ReportTimes
from service.dicom.volume import PetVolume
from service.dicom.writer import DerivedSeries
from service.errors import PetHeaderError
from service.pipeline.inference import DenoiseResult
from service.pipeline.records import SeriesView
from service.pipeline.spool import Spool
from service.pipeline.worker_context import WorkerContext

__all__ = ["report_paths_for", "write_report"]

log = structlog.stdlib.get_logger(__name__)


def write_report(
    ctx: WorkerContext,
    series: SeriesView,
    volume: PetVolume,
    result: DenoiseResult,
    derived: DerivedSeries,
) -> None:
    """Write the SR + PDF quality report next to the derived series, if configured."""
    output = ctx.settings.output
    if not output.quality_report:
        return
    # The loaded denoiser's card: read once, when its SHA-256 was checked against the weights.
    card = ctx.denoiser.card
    times = ReportTimes(
        received_at=series.first_received_at,
        completed_at=series.completed_at,
        inference_s=result.seconds,
        written_at=time.time(),
    )
    try:
        write_quality_report(
            volume,
            derived.paths,
            result.algorithm,
            report_dir(derived.directory),
            drf_estimate=result.drf_estimate,
            clipped_voxels=int(np.count_nonzero(result.volume_bqml < 0.0)),
            card=card,
            times=times,
            change_limit_pct=output.quality_change_limit_pct,
        )
    except (PetHeaderError, ValueError) as exc:
        log.error(
            "quality_report_failed",
            series_uid=series.series_instance_uid,
            error=f"{type(exc).__name__}: {exc}",
        )


def report_paths_for(spool: Spool, output_key: str, destination: DestinationSettings) -> list[Path]:
    """The report instances to send with the series to ``destination`` (maybe none)."""
    if not destination.send_quality_report:
        return []
    return report_dicom_paths(report_dir(spool.path_of(output_key)))
