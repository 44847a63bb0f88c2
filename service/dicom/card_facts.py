"""What the node takes from a model card, and the check of one series against its ranges.

A network is only known to work on inputs like its training data. The model card (read
through ``service.pipeline.inference``, the one door to ``model/``) says which DRFs, voxel
sizes and tracers that was; :func:`check_trained_range` compares a series with them: the
denoiser's DRF estimate, the in-plane pixel spacing and the slice spacing of the volume, and
the tracer the headers name. The node still denoises a series outside these ranges (refusing
is a tracer policy decided at admission, ``service.dicom.selection``), but it says so, in the
same words everywhere: the derived series' Derivation Description, the series' audit trail,
the status page and the quality report all show :attr:`RangeCheck.note`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from service.dicom import radionuclide

__all__ = [
    "OUTSIDE_TRAINED_RANGE",
    "SPACING_TOLERANCE_FRACTION",
    "ModelCardFacts",
    "RangeCheck",
    "TrainedRanges",
    "check_trained_range",
    "drf_in_range",
    "series_tracer",
]

#: The words every place that reports a range finding starts with.
OUTSIDE_TRAINED_RANGE = "outside the trained range"
#: Voxel sizes within this fraction of a bound count as on it: decimal strings in the headers
#: (PS3.5 DS) and slice positions differenced in floating point are not exact.
SPACING_TOLERANCE_FRACTION = 1e-3

Span = tuple[float, float]


@dataclass(frozen=True)
class TrainedRanges:
    """DRF, pixel and slice spacing spans (mm) and tracers of a network's training data.

    A span that is None is unknown and not checked; ``tracers`` holds canonical lower-case
    names (``service.dicom.radionuclide``), empty when unknown.
    """

    drf: Span | None
    pixel_mm: Span | None
    slice_mm: Span | None
    tracers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ModelCardFacts:
    """What the node quotes from the model card of the weights that made a series."""

    intended_use: str
    ranges: TrainedRanges

    @property
    def trained_drf_range(self) -> Span | None:
        """The DRF span the network was trained on, if the card gives one."""
        return self.ranges.drf


@dataclass(frozen=True)
class RangeCheck:
    """Where one series lies outside the trained ranges: one finding per quantity.

    Findings read like ``DRF estimate 140 > 100`` or ``pixel 2 mm < 3.6 mm``; none means
    inside. ``checked`` is False when there was nothing to check against (no model card, as
    for the Gaussian filter).
    """

    findings: tuple[str, ...] = ()
    checked: bool = False

    @property
    def outside(self) -> bool:
        """Whether anything lies outside the trained ranges."""
        return bool(self.findings)

    @property
    def note(self) -> str:
        """``outside the trained range: <findings>``, or "" when inside."""
        return f"{OUTSIDE_TRAINED_RANGE}: {'; '.join(self.findings)}" if self.findings else ""


def drf_in_range(span: Span | None, drf: float | None) -> bool | None:
    """Whether ``drf`` lies in the trained DRF span (None when either is unknown).

    The one DRF comparison of the node: the range check and the quality report's dose check
    both use it, so they cannot disagree.
    """
    if drf is None or span is None:
        return None
    return span[0] <= drf <= span[1]


def _figure(value: float) -> str:
    """A DRF or size as people write it: three significant digits, no exponent."""
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _spacing_findings(name: str, values: Sequence[float], span: Span | None) -> list[str]:
    """``name v mm < low mm`` / ``> high mm`` for the smallest and largest of ``values``."""
    if span is None or not values:
        return []
    low, high = span
    smallest, largest = min(values), max(values)
    findings = []
    if smallest < low * (1.0 - SPACING_TOLERANCE_FRACTION):
        findings.append(f"{name} {_figure(smallest)} mm < {_figure(low)} mm")
    if largest > high * (1.0 + SPACING_TOLERANCE_FRACTION):
        findings.append(f"{name} {_figure(largest)} mm > {_figure(high)} mm")
    return findings


def check_trained_range(
    ranges: TrainedRanges | None,
    *,
    drf_estimate: float | None,
    spacing_mm: Sequence[float],
    tracer: str | None,
) -> RangeCheck:
    """Compare one series with the trained ranges.

    Args:
        ranges: The model card's ranges; None (no card) checks nothing.
        drf_estimate: The denoiser's DRF estimate of the input, if it made one.
        spacing_mm: (slice spacing, row spacing, column spacing) of the input volume.
        tracer: Canonical tracer name from the headers, None when not recognised (then not
            checked: selection already ignores unrecognised tracers).
    """
    if ranges is None:
        return RangeCheck()
    findings: list[str] = []
    if ranges.drf is not None and drf_estimate is not None:
        low, high = ranges.drf
        if not drf_in_range(ranges.drf, drf_estimate):
            bound = f"< {_figure(low)}" if drf_estimate < low else f"> {_figure(high)}"
            findings.append(f"DRF estimate {_figure(drf_estimate)} {bound}")
    findings += _spacing_findings("pixel", list(spacing_mm[1:]), ranges.pixel_mm)
    findings += _spacing_findings("slice", list(spacing_mm[:1]), ranges.slice_mm)
    if tracer is not None and ranges.tracers and tracer not in ranges.tracers:
        findings.append(f"tracer {tracer} not in {', '.join(sorted(ranges.tracers))}")
    return RangeCheck(tuple(findings), checked=True)


def series_tracer(ds: Dataset) -> str | None:
    """Canonical tracer of a series from one of its datasets (first radiopharmaceutical)."""
    items = ds.get("RadiopharmaceuticalInformationSequence") or []
    return radionuclide.identify_tracer(items[0]) if items else None
