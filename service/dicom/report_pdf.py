"""The quality report as a two-page PDF, readable on a reading-room monitor.

Page 1: coronal and sagittal MIPs of the received and the derived series in one shared SUV
window, their difference, and the key numbers. Page 2: the ten hottest foci (changes beyond
the limit in red), the dose plausibility check, times, and the intended use from the model
card. The PDF carries no patient identifiers (only UIDs), so the status page may serve it.
It is drawn with matplotlib's non-interactive Agg/PDF backends only.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.transforms import Bbox

from service.dicom.quality import (
    FOCUS_RADIUS_MM,
    PEAK_RADIUS_MM,
    DoseCheck,
    ModelCardFacts,
    QualityReport,
    ReferenceMethod,
)
from service.dicom.report_identity import ReportTarget, ReportTimes

__all__ = ["DERIVED_STATEMENT", "render_quality_pdf"]

DERIVED_STATEMENT = (
    "DERIVED IMAGES: the derived series was computed by software from the received "
    "low-dose series. It is not the acquired data."
)
_PAGE_IN = (16.54, 11.69)  # A3 landscape: large type at full-screen size
_RED = "#c62828"
_GREY = "#555555"
_TABLE_FONT = 14
#: Upper end of the shared SUV window in multiples of the reference SUVmean (liver ~2 gives
#: ~8, a usual FDG reading window).
_WINDOW_REFERENCE_FACTOR = 4.0
_ROW_HEIGHT = 0.034  # figure fraction per table line


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.1f} %"


def _utc(epoch_s: float | None) -> str:
    if epoch_s is None:
        return "n/a"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch_s))


def _header(fig: Figure, target: ReportTarget, page: int) -> None:
    algorithm = target.algorithm
    fig.text(0.02, 0.975, "UniPET quality report", fontsize=24, weight="bold", va="top")
    fig.text(0.98, 0.975, f"page {page} of 2", fontsize=13, ha="right", va="top", color=_GREY)
    fig.text(0.02, 0.935, DERIVED_STATEMENT, fontsize=15, weight="bold", color=_RED, va="top")
    fig.text(
        0.02,
        0.905,
        f"Algorithm {algorithm.name} {algorithm.version}   weights sha256 "
        f"{algorithm.weights_sha256}\nDerived series {target.derived_series_uid}",
        fontsize=12,
        va="top",
        family="monospace",
    )


def _mips(
    suv: npt.NDArray[np.floating], spacing_mm: Sequence[float]
) -> tuple[tuple[npt.NDArray[np.floating], float], tuple[npt.NDArray[np.floating], float]]:
    """Coronal (max over rows, y) and sagittal (max over columns, x) MIPs with aspect."""
    dz, dy, dx = spacing_mm
    coronal = suv.max(axis=1)
    sagittal = suv.max(axis=2)
    return (coronal, dz / dx), (sagittal, dz / dy)


def _draw_mips(
    fig: Figure,
    before: npt.NDArray[np.floating],
    after: npt.NDArray[np.floating],
    spacing_mm: Sequence[float],
    reference_mean: float,
) -> None:
    window_factor = _WINDOW_REFERENCE_FACTOR
    mips_before, mips_after = _mips(before, spacing_mm), _mips(after, spacing_mm)
    window = max(1.0, window_factor * reference_mean)
    diff_window = 0.25 * window
    grid = fig.add_gridspec(2, 3, left=0.02, right=0.6, top=0.82, bottom=0.05, wspace=0.15)
    titles = ("Received (low dose)", "Derived (denoised)", "Derived \u2212 received")
    views = ("coronal", "sagittal")
    for row in range(2):
        (mip_b, aspect), (mip_a, _) = mips_before[row], mips_after[row]
        panels = (mip_b, mip_a, mip_a - mip_b)
        for col, image in enumerate(panels):
            ax = fig.add_subplot(grid[row, col])
            diff = col == 2
            shown = ax.imshow(
                image,
                cmap="RdBu_r" if diff else "gray_r",
                vmin=-diff_window if diff else 0.0,
                vmax=diff_window if diff else window,
                origin="lower",
                aspect=aspect,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{titles[col]}\n{views[row]} MIP", fontsize=13)
            bar = fig.colorbar(shown, ax=ax, fraction=0.05, pad=0.02)
            bar.ax.tick_params(labelsize=11)
            bar.set_label("SUVbw difference" if diff else "SUVbw (g/ml)", fontsize=11)
    fig.text(
        0.03,
        0.02,
        f"Shared window SUV 0\u2013{window:.1f} ({window_factor:g} x reference SUVmean of the "
        f"received series); difference \u00b1{diff_window:.1f}. "
        "Coronal: patient right on the left.",
        fontsize=11,
        color=_GREY,
    )


def _table(
    fig: Figure,
    box: tuple[float, float, float],
    rows: list[list[str]],
    header: list[str],
    widths: list[float],
    red: set[tuple[int, int]],
) -> None:
    """A table whose top-left corner is at (left, top), ``box[2]`` wide, one line per row."""
    left, top, width = box
    height = _ROW_HEIGHT * (len(rows) + 1)
    ax = fig.add_axes((left, top - height, width, height))
    ax.axis("off")
    table = ax.table(
        cellText=rows,
        colLabels=header,
        colWidths=widths,
        cellLoc="left",
        bbox=Bbox.from_bounds(0, 0, 1, 1),
    )
    table.auto_set_font_size(False)
    table.set_fontsize(_TABLE_FONT)
    for (r, c), cell in table.get_celld().items():
        if r == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#e8e8e8")
        if (r - 1, c) in red:
            cell.set_text_props(color=_RED, weight="bold")


def _in_range_text(dose: DoseCheck, drf: float | None) -> str:
    verdict = dose.in_range(drf)
    if verdict is None:
        return "range unknown"
    return "inside" if verdict else "OUTSIDE"


def _trained_range_text(report: QualityReport) -> str:
    """Short verdict of the range check; its findings are in the notes on page 2."""
    check = report.trained_range
    if check.outside:
        return "OUTSIDE (see notes)"
    return "inside" if check.checked else "n/a"


def _key_numbers(fig: Figure, report: QualityReport) -> None:
    ref = report.reference
    liver = ref.method is ReferenceMethod.LIVER
    dose = report.dose
    trained = (
        f"{dose.trained_drf_range[0]:g}\u2013{dose.trained_drf_range[1]:g}"
        if dose.trained_drf_range
        else "n/a"
    )
    rows = [
        ["Reference region", "liver, right lobe" if liver else "no liver: most homogeneous"],
        ["SUVmean recv / derived", f"{_fmt(ref.mean_before)} / {_fmt(ref.mean_after)}"],
        ["Noise SD recv / derived", f"{_fmt(ref.sd_before, 3)} / {_fmt(ref.sd_after, 3)}"],
        ["CoV recv / derived", f"{_fmt(ref.cov_before_pct, 1)} / {_fmt(ref.cov_after_pct, 1)} %"],
        [
            "DRF estimate (images)",
            f"{_fmt(dose.drf_estimate, 1)}: {_in_range_text(dose, dose.drf_estimate)}",
        ],
        [
            "DRF from headers",
            f"{_fmt(dose.header_drf, 1)}: {_in_range_text(dose, dose.header_drf)}",
        ],
        ["Trained DRF range (card)", trained],
        ["Trained ranges (card)", _trained_range_text(report)],
        [
            "Foci changed > limit",
            f"{report.flagged_foci} of {len(report.foci)} (> {report.change_limit_pct:g} %)",
        ],
        ["Voxels clipped at 0", f"{report.clipped_voxels}"],
    ]
    red = {(8, 1)} if report.flagged_foci else set()
    if report.trained_range.outside:
        red.add((7, 1))
    if dose.in_range(dose.drf_estimate) is False:
        red.add((4, 1))
    if dose.in_range(dose.header_drf) is False:
        red.add((5, 1))
    fig.text(0.63, 0.83, "Key numbers (SUVbw)", fontsize=16, weight="bold")
    _table(fig, (0.63, 0.81, 0.35), rows, ["Item", "Value"], [0.55, 0.45], red)


def _page_one(
    report: QualityReport,
    before: npt.NDArray[np.floating],
    after: npt.NDArray[np.floating],
    spacing_mm: Sequence[float],
    target: ReportTarget,
) -> Figure:
    fig = Figure(figsize=_PAGE_IN)
    _header(fig, target, 1)
    _draw_mips(fig, before, after, spacing_mm, report.reference.mean_before)
    _key_numbers(fig, report)
    return fig


def _foci_table(fig: Figure, report: QualityReport) -> None:
    header = [
        "#",
        "x, y, z (mm)",
        "SUVmax recv",
        "SUVmax derived",
        "change",
        "SUVpeak recv",
        "SUVpeak derived",
        "change",
    ]
    rows, red = [], set()
    for n, focus in enumerate(report.foci):
        x, y, z = focus.sphere.centre_mm
        rows.append(
            [
                str(focus.rank),
                f"{x:.0f}, {y:.0f}, {z:.0f}",
                _fmt(focus.suvmax_before),
                _fmt(focus.suvmax_after),
                _pct(focus.suvmax_change_pct),
                _fmt(focus.suvpeak_before),
                _fmt(focus.suvpeak_after),
                _pct(focus.suvpeak_change_pct),
            ]
        )
        for col, change in ((4, focus.suvmax_change_pct), (7, focus.suvpeak_change_pct)):
            if not math.isfinite(change) or abs(change) > report.change_limit_pct:
                red.update({(n, col), (n, 0)})
    fig.text(
        0.02,
        0.83,
        f"Ten hottest foci, SUVbw (red: change beyond {report.change_limit_pct:g} %)",
        fontsize=16,
        weight="bold",
    )
    widths = [0.04, 0.2, 0.12, 0.12, 0.1, 0.12, 0.12, 0.1]
    _table(fig, (0.02, 0.81, 0.96), rows or [["-"] * len(header)], header, widths, red)


def _facts_table(fig: Figure, report: QualityReport, times: ReportTimes) -> None:
    dose = report.dose
    rows = [
        ["Injected activity", f"{_fmt(dose.injected_mbq_per_kg)} MBq/kg"],
        [
            "Frame duration per bed",
            f"{_fmt(None if dose.frame_duration_s is None else dose.frame_duration_s / 60.0)} min",
        ],
        ["Received (first instance)", _utc(times.received_at)],
        ["Complete", _utc(times.completed_at)],
        ["Inference", f"{_fmt(times.inference_s, 1)} s"],
        ["Derived series written", _utc(times.written_at)],
        ["Sent", "with this report; see node status"],
    ]
    fig.text(0.02, 0.40, "Dose and times", fontsize=16, weight="bold")
    _table(fig, (0.02, 0.38, 0.46), rows, ["Item", "Value"], [0.45, 0.55], set())


def _page_two(
    report: QualityReport, target: ReportTarget, times: ReportTimes, card: ModelCardFacts | None
) -> Figure:
    fig = Figure(figsize=_PAGE_IN)
    _header(fig, target, 2)
    _foci_table(fig, report)
    _facts_table(fig, report, times)
    intended = (
        card.intended_use
        if card is not None and card.intended_use
        else "no model card for this algorithm"
    )
    dose_note = report.dose.header_note
    notes = [
        f"Intended use (model card): {intended}.",
        "SUVbw from the received series' headers "
        f"(factor {report.suv_per_bqml:.3g} g/ml per Bq/ml); the derived series keeps them, "
        "so both use the same factor.",
        f"SUVpeak: mean in a 1 cm\u00b3 sphere (radius {PEAK_RADIUS_MM:.1f} mm), PERCIST 1.0. "
        f"A focus is a {FOCUS_RADIUS_MM:g} mm sphere around a local maximum of SUVpeak "
        "in either series; SUVmax and SUVpeak are the largest within it.",
        f"DRF from headers: {dose_note}. "
        "The same numbers are in the DICOM SR (TID 1500) sent with the series.",
    ]
    if report.trained_range.outside:
        notes.insert(0, f"Input {report.trained_range.note} (model card).")
    fig.text(0.52, 0.40, "Notes", fontsize=16, weight="bold")
    fig.text(0.52, 0.38, "\n\n".join(notes), fontsize=13, va="top", wrap=True, linespacing=1.4)
    return fig


def render_quality_pdf(
    report: QualityReport,
    received_suv: npt.NDArray[np.floating],
    derived_suv: npt.NDArray[np.floating],
    spacing_mm: Sequence[float],
    target: ReportTarget,
    times: ReportTimes,
    card: ModelCardFacts | None,
) -> bytes:
    """The PDF bytes of one quality report (two A3 landscape pages)."""
    buffer = io.BytesIO()
    metadata = {
        "Title": "UniPET quality report",
        "Creator": "UniPET DICOM node",
        "CreationDate": None,
    }
    with PdfPages(buffer, metadata=metadata) as pdf:
        for fig in (
            _page_one(report, received_suv, derived_suv, spacing_mm, target),
            _page_two(report, target, times, card),
        ):
            pdf.savefig(fig)
    return buffer.getvalue()
