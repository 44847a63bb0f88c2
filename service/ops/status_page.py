"""HTML of the read-only status page: counts, health, last processed series, dead letters.

A series whose input lay outside the model card's trained ranges shows the node's note
("outside the trained range: ...") in its row and, when it is the last processed series,
beside its MIPs.

What the page may show is fixed: UIDs, AE titles, states, reasons our own code wrote, and
numbers. It never shows SeriesDescription or any other header text a
scanner filled in, since those fields can carry patient data. Every value goes through
``html.escape`` on its way into the page, including our own reason strings (an error message
may quote a value a peer sent).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from html import escape
from importlib.resources import files
from pathlib import Path
from string import Template

from service.config import NodeSettings
from service.ops.health import CheckResult
from service.ops.operator import (
    SeriesSummary,
    dead_letters,
    quality_report,
    trained_range_note,
)
from service.pipeline.records import SeriesView
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore

__all__ = ["REFRESH_S", "last_processed", "render_status_page"]

#: Seconds between automatic reloads of the page.
REFRESH_S = 10
#: Series shown in the recent-series table.
RECENT_LIMIT = 50
_ERROR_CHARS = 400


def _template() -> Template:
    return Template(files("service.ops").joinpath("templates/status.html").read_text("utf-8"))


def _seconds(value: float | None) -> str:
    if value is None:
        return '<span class="muted">&ndash;</span>'
    if value >= 120:
        return f"{value / 60:.1f} min"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def _number(value: float | None, digits: int = 1) -> str:
    return '<span class="muted">&ndash;</span>' if value is None else f"{value:.{digits}f}"


def _utc(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_s))


def _uid_cell(uid: str) -> str:
    return f'<td class="uid">{escape(uid)}</td>'


def _badge(state: str) -> str:
    text = escape(state)
    return f'<span class="badge s-{text}">{text}</span>'


def _clip(text: str) -> str:
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "\u2026"


def _counts_html(counts: dict[SeriesState, int]) -> str:
    shown = [(state, n) for state, n in counts.items() if n] or [(SeriesState.DONE, 0)]
    return "".join(
        f'<div class="chip s-{escape(state.value)}"><b>{n}</b>'
        f"<span>{escape(state.value)}</span></div>"
        for state, n in shown
    )


def _checks_html(checks: Sequence[CheckResult]) -> str:
    return "".join(
        f'<li><span class="badge {"ok" if check.ok else "bad"}">{"OK" if check.ok else "FAIL"}'
        f'</span><span class="name">{escape(check.name)}</span>'
        f'<span class="detail">{escape(check.detail)}</span></li>'
        for check in checks
    )


def _report_cell(report: dict[str, object] | None) -> str:
    """Link to the quality report PDF, with the count of foci changed beyond the limit."""
    if report is None:
        return '<td class="muted">&ndash;</td>'
    flagged = report.get("flagged_foci", 0)
    css = "error" if flagged else ""
    return (
        f'<td class="{css}"><a href="{escape(str(report["pdf"]))}">PDF</a> '
        f"{escape(str(flagged))} flagged</td>"
    )


def _range_cell(note: str) -> str:
    """The trained-range flag of a series: its note when outside, else a dash."""
    if not note:
        return '<td class="muted">&ndash;</td>'
    return f'<td class="range-out">{escape(_clip(note))}</td>'


def _series_row(
    series: SeriesView, report: dict[str, object] | None = None, range_note: str = ""
) -> str:
    wait = (series.completed_at - series.first_received_at) if series.completed_at else None
    end_to_end = (series.done_at - series.last_received_at) if series.done_at else None
    expected = "?" if series.expected_instances is None else str(series.expected_instances)
    completeness = series.completeness_reason or series.state_reason
    return (
        "<tr>"
        + _uid_cell(series.series_instance_uid)
        + f"<td>{escape(series.calling_aet)}</td>"
        + f"<td>{_badge(series.state.value)}</td>"
        + f'<td class="num">{series.received_instances} / {escape(expected)}</td>'
        + f"<td>{escape(_clip(completeness))}</td>"
        + f'<td class="num">{_seconds(wait)}</td>'
        + f'<td class="num">{_seconds(series.inference_seconds)}</td>'
        + f'<td class="num">{_seconds(end_to_end)}</td>'
        + f'<td class="num">{_number(series.drf_estimate)}</td>'
        + _range_cell(range_note)
        + f'<td class="num">{escape(_utc(series.state_changed_at))}</td>'
        + _report_cell(report)
        + "</tr>"
    )


def _dead_letters_html(items: Iterable[SeriesSummary]) -> str:
    rows = [
        "<tr>"
        + _uid_cell(item.series_uid)
        + f"<td>{escape(item.calling_aet)}</td>"
        + f"<td>{_badge(item.state)}</td>"
        + f'<td class="num">{escape(_utc(item.updated_at))}</td>'
        + f'<td class="error">{escape(_clip(item.last_error or item.reason))}</td>'
        + "</tr>"
        for item in items
    ]
    if not rows:
        return '<p class="muted">No dead letters.</p>'
    return (
        "<table><thead><tr><th>Series UID</th><th>Calling AE</th><th>State</th>"
        "<th>Since</th><th>Error</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def _not_processed_html(state: StateStore) -> str:
    """IGNORED and REJECTED series counted by reason (our own reason strings)."""
    series = state.in_states([SeriesState.IGNORED, SeriesState.REJECTED])
    counts = Counter((s.state.value, s.state_reason) for s in series)
    if not counts:
        return '<p class="muted">Every received series was denoised.</p>'
    rows = "".join(
        f"<tr><td>{_badge(state_value)}</td><td>{escape(_clip(reason))}</td>"
        f'<td class="num">{n}</td></tr>'
        for (state_value, reason), n in counts.most_common()
    )
    return (
        "<table><thead><tr><th>State</th><th>Reason</th><th>Series</th></tr></thead><tbody>"
        + rows
        + "</tbody></table>"
    )


def last_processed(recent: Iterable[SeriesView]) -> SeriesView | None:
    """The most recently changed series that has a derived output on the spool."""
    return next((s for s in recent if s.output_key is not None), None)


def _mips_html(
    series: SeriesView | None, spool_root: Path | None = None, range_note: str = ""
) -> str:
    if series is None:
        return '<p class="muted">No series processed yet.</p>'
    uid = escape(series.series_instance_uid)
    version = escape(f"{series.written_at or 0:.0f}")
    figures = "".join(
        f'<figure><img id="mip-{name}" src="/thumbnails/{uid}/{name}.png?v={version}" '
        f'alt="{caption} coronal MIP"><figcaption>{caption}</figcaption></figure>'
        for name, caption in (("before", "Received (low dose)"), ("after", "Derived (denoised)"))
    )
    facts = [
        ("Series UID", f'<span class="uid">{uid}</span>'),
        ("Derived UID", f'<span class="uid">{escape(series.output_series_uid or "")}</span>'),
        ("State", _badge(series.state.value)),
        ("Instances", f"{series.output_instances or 0}"),
        ("Algorithm", escape(series.algorithm)),
        ("DRF estimate", _number(series.drf_estimate)),
        (
            "Trained range",
            f'<span class="range-out">{escape(range_note)}</span>'
            if range_note
            else '<span class="muted">&ndash;</span>',
        ),
        ("Inference", _seconds(series.inference_seconds)),
        ("Grey window", "shared, from the received MIP"),
    ]
    report = quality_report(spool_root, series)
    if report is not None:
        link = f'<a href="{escape(str(report["pdf"]))}">PDF</a>'
        facts.append(
            ("Quality report", f"{link}, {escape(str(report['flagged_foci']))} foci flagged")
        )
    facts_html = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in facts)
    return f'<div class="mips">{figures}<dl class="facts">{facts_html}</dl></div>'


def render_status_page(
    settings: NodeSettings, state: StateStore, checks: Sequence[CheckResult]
) -> str:
    """The full page as a string (UTF-8 HTML)."""
    recent = state.recent(RECENT_LIMIT)
    spool_root = settings.spool.path
    notes = {s.series_instance_uid: trained_range_note(state, s) for s in recent}
    rows = "".join(
        _series_row(series, quality_report(spool_root, series), notes[series.series_instance_uid])
        for series in recent
    ) or ('<tr><td colspan="12" class="muted">No series received yet.</td></tr>')
    last = last_processed(recent)
    return _template().substitute(
        ae_title=escape(settings.listener.ae_title),
        listener_port=str(settings.listener.port),
        refresh_s=str(REFRESH_S),
        generated=escape(_utc(time.time())),
        counts=_counts_html(state.count_by_state()),
        checks=_checks_html(checks),
        mips=_mips_html(last, spool_root, notes[last.series_instance_uid] if last else ""),
        series_rows=rows,
        not_processed=_not_processed_html(state),
        dead_letters=_dead_letters_html(dead_letters(state)),
    )
