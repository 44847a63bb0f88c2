"""Operator actions on node state: status summary, dead-letter listing and replay.

Used by the CLI (and the status page); all of it goes through ``StateStore``, so it works on
any host that can reach the state database.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from service.dicom.card_facts import OUTSIDE_TRAINED_RANGE
from service.dicom.report import PDF_NAME, read_summary, report_dir
from service.errors import InvalidTransitionError
from service.pipeline.records import SeriesUpdate, SeriesView
from service.pipeline.states import PendingStep, SeriesState
from service.pipeline.store import StateStore

S = SeriesState


@dataclass(frozen=True)
class SeriesSummary:
    """One line of ``unipet-node status`` (UIDs, states and timings; no patient data)."""

    series_uid: str
    state: str
    reason: str
    calling_aet: str
    instances: int
    expected: int | None
    completeness: str
    algorithm: str
    drf_estimate: float | None
    output_series_uid: str | None
    inference_s: float | None
    end_to_end_s: float | None
    last_error: str
    updated_at: float

    @classmethod
    def of(cls, s: SeriesView) -> SeriesSummary:
        """Summarise one series."""
        return cls(
            series_uid=s.series_instance_uid,
            state=s.state.value,
            reason=s.state_reason,
            calling_aet=s.calling_aet,
            instances=s.received_instances,
            expected=s.expected_instances,
            completeness=s.completeness_reason,
            algorithm=s.algorithm,
            drf_estimate=s.drf_estimate,
            output_series_uid=s.output_series_uid,
            inference_s=s.inference_seconds,
            end_to_end_s=(s.done_at - s.last_received_at) if s.done_at else None,
            last_error=s.last_error,
            updated_at=s.state_changed_at,
        )

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return asdict(self)


def quality_report(spool_root: Path | None, series: SeriesView) -> dict[str, object] | None:
    """Digest of a series' quality report (SR + PDF) on the spool, or None without one.

    Adds ``pdf`` (the web path of the PDF) to the digest written by the worker.
    """
    if spool_root is None or series.output_key is None:
        return None
    directory = report_dir(spool_root.resolve() / series.output_key)
    summary = read_summary(directory)
    if summary is None or not (directory / PDF_NAME).is_file():
        return None
    return {**summary, "pdf": f"/reports/{series.series_instance_uid}/{PDF_NAME}"}


def trained_range_note(state: StateStore, series: SeriesView) -> str:
    """The trained-range note of the derived series now on the spool, "" when it has none.

    The denoise job writes the note (``RangeCheck.note``) into the reason of its move from
    PROCESSING to WRITTEN, so the latest such entry of the audit trail belongs to the
    latest derived series (an operator's replay to WRITTEN writes no new series).
    """
    if series.output_key is None:
        return ""
    writes = [
        t
        for t in state.history(series.series_instance_uid)
        if t.from_state == S.PROCESSING.value and t.to_state == S.WRITTEN.value
    ]
    if not writes:
        return ""
    reason = writes[-1].reason
    start = reason.find(OUTSIDE_TRAINED_RANGE)
    return reason[start:] if start >= 0 else ""


def status_report(
    state: StateStore, limit: int = 50, spool_root: Path | None = None
) -> dict[str, object]:
    """Counts per state plus the most recent series, with report digest and trained-range note."""
    counts = state.count_by_state()
    series = []
    for view in state.recent(limit):
        row = SeriesSummary.of(view).as_dict()
        row["quality_report"] = quality_report(spool_root, view)
        row["trained_range"] = trained_range_note(state, view)
        series.append(row)
    return {
        "counts": {k.value: v for k, v in counts.items()},
        "series": series,
        "generated_at": time.time(),
    }


def dead_letters(state: StateStore) -> list[SeriesSummary]:
    """Series whose retries are spent, plus incomplete series given up by completeness."""
    dead = state.in_states([S.DEAD])
    incomplete = [
        s for s in state.in_states([S.FAILED]) if s.pending_step is PendingStep.COMPLETENESS
    ]
    return [SeriesSummary.of(s) for s in [*dead, *incomplete]]


def replay(state: StateStore, series_uid: str) -> SeriesView:
    """Put a dead-lettered series back to work from where it failed.

    A series that failed delivery goes back to WRITTEN (only missing destinations are sent);
    one that failed denoising goes back to COMPLETE; an incomplete one re-opens for receiving.

    Raises:
        InvalidTransitionError: the series is not dead-lettered.
    """
    series = state.get(series_uid)
    if series.state is S.FAILED and series.pending_step is PendingStep.COMPLETENESS:
        target, step = S.RECEIVING, PendingStep.NONE
    elif series.state is S.DEAD and series.pending_step is PendingStep.SEND and series.output_key:
        target, step = S.WRITTEN, PendingStep.SEND
    elif series.state is S.DEAD:
        target, step = S.COMPLETE, PendingStep.NONE
    else:
        raise InvalidTransitionError(
            f"series {series_uid} is {series.state.value}: only dead letters can be replayed"
        )
    changed = state.transition(
        series_uid,
        target,
        "replayed by operator",
        expect=[series.state],
        lease_s=0.0 if target is S.WRITTEN else None,
        update=SeriesUpdate(
            pending_step=step,
            attempts=0,
            last_received_at=time.time() if target is S.RECEIVING else series.last_received_at,
        ),
    )
    if changed is None:
        raise InvalidTransitionError(f"series {series_uid} changed state during replay; try again")
    return changed
