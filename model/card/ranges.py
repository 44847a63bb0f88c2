"""The ranges a network was trained on: dose reduction factor and voxel size.

A network trained on 3.6 to 5 mm voxels and DRFs 4 to 100 has never seen a 2 mm voxel or a
DRF of 150; its output there is an extrapolation. The card says where the training data lay,
so that whoever runs the network (the DICOM node) can say when an input lies outside.

A card may state the ranges (``data.trained_ranges``, written by training from the studies
it loaded); a card without them, such as UniPET 1.0.0's, still names its training DRFs and
the dataset sizes, whose voxel sizes ``model.simulate.geometry.SIZES`` fixes, and
:func:`effective_ranges` reads the ranges from those.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from model.card._json import Reader, omit_none
from model.simulate.geometry import SIZES

__all__ = ["Span", "TrainedRanges", "effective_ranges", "span_of"]

#: A closed interval ``(low, high)``.
Span = tuple[float, float]


def span_of(values: Iterable[float]) -> Span | None:
    """The smallest span holding every value, or None when there are none."""
    items = [float(v) for v in values]
    return (min(items), max(items)) if items else None


def _check(name: str, span: Span | None) -> None:
    """Refuse a span that is not two finite numbers in order."""
    if span is None:
        return
    low, high = span
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"trained range {name} must be [low, high] with low <= high, got {span}")


@dataclass(frozen=True)
class TrainedRanges:
    """DRF, in-plane pixel size and slice spacing (mm) of the training data, each a span.

    A part that is None is not known: the card does not say, and nothing is checked against it.

    Raises:
        ValueError: a span is not finite or its low end is above its high end.
    """

    drf: Span | None = None
    pixel_mm: Span | None = None
    slice_mm: Span | None = None

    def __post_init__(self) -> None:
        for name, span in (
            ("drf", self.drf),
            ("pixel_mm", self.pixel_mm),
            ("slice_mm", self.slice_mm),
        ):
            _check(name, span)

    def to_json(self) -> dict[str, object]:
        """The card's ``data.trained_ranges`` object; unknown parts are left out."""
        return omit_none(
            [
                ("drf", _pair(self.drf)),
                ("pixel_mm", _pair(self.pixel_mm)),
                ("slice_mm", _pair(self.slice_mm)),
            ]
        )

    @classmethod
    def from_json(cls, r: Reader) -> TrainedRanges:
        """Read the ranges (raises CardError naming the field that is not a span)."""
        ranges = cls(r.opt_span("drf"), r.opt_span("pixel_mm"), r.opt_span("slice_mm"))
        r.done()
        return ranges

    def over(self, fallback: TrainedRanges) -> TrainedRanges:
        """These ranges, with ``fallback``'s parts where these are not known."""
        return TrainedRanges(
            drf=self.drf if self.drf is not None else fallback.drf,
            pixel_mm=self.pixel_mm if self.pixel_mm is not None else fallback.pixel_mm,
            slice_mm=self.slice_mm if self.slice_mm is not None else fallback.slice_mm,
        )


def _pair(span: Span | None) -> list[float] | None:
    return None if span is None else [span[0], span[1]]


def effective_ranges(
    stated: TrainedRanges | None, training_drfs: Sequence[float], sizes: Sequence[str | None]
) -> TrainedRanges:
    """The ranges a card stands for: what it states, else what its recipe implies.

    Args:
        stated: The card's ``data.trained_ranges``, if it has them.
        training_drfs: The card's training DRFs (the DRF span when none is stated).
        sizes: The study size of every training dataset; the voxel spans come from
            ``SIZES`` only when every size is known there (a dataset of unknown size may
            have any voxel).
    """
    known = [SIZES[s] for s in sizes if s is not None and s in SIZES]
    complete = bool(sizes) and len(known) == len(sizes)
    implied = TrainedRanges(
        drf=span_of(training_drfs),
        pixel_mm=span_of(spec.pixel_mm for spec in known) if complete else None,
        slice_mm=span_of(spec.slice_mm for spec in known) if complete else None,
    )
    return implied if stated is None else stated.over(implied)
