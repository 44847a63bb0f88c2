"""Seed-to-seed spread: how far apart two trainings of one recipe land on the same test set.

A margin between two models means little if retraining the same recipe with another seed
moves the figures as much. The evaluation holds each seed of the shipped recipe as its own
method row (``unipet``, ``unipet_s1``, ...); the spread at one DRF is the largest minus the
smallest of their means, per figure. The card puts it beside the targets, so a reader can see
whether, say, UniPET's 0.3 dB over the vanilla network is more than a reseed's worth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from model.evaluation.lesion_tables import Column, cell, grid_lines

__all__ = ["SPREAD_COLUMNS", "SeedSpread", "seed_spread", "seed_spread_markdown"]

# Figures whose spread is reported: image quality, texture, lesion-first figures.
SPREAD_COLUMNS: tuple[Column, ...] = (
    ("psnr_db", "PSNR dB", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("liver_cov_ratio", "liver CoV ratio", "{:.3f}"),
    ("lesion_peak_bias_nf_pct", "SUVpeak bias % (vs NF)", "{:.1f}"),
    ("cr_10_13", "CR 10-13 mm", "{:.3f}"),
    ("false_hot_spots", "false hot spots / volume", "{:.2f}"),
)


@dataclass(frozen=True)
class SeedSpread:
    """Largest minus smallest mean over the seeds at one DRF, per figure (None: a seed
    lacks that figure)."""

    drf: float
    seeds: tuple[str, ...]
    spread: Mapping[str, float | None]


def _figure(means: Mapping[str, object], key: str) -> float | None:
    """A finite figure of one row's means, else None."""
    value = means.get(key)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def seed_spread(
    tables: Mapping[str, Sequence[Mapping[str, object]]], seeds: Sequence[str]
) -> list[SeedSpread]:
    """Spread per DRF over the method rows named in ``seeds`` (the shipped one first).

    DRFs where fewer than two of the seeds were evaluated are left out; an empty list means
    there is no second seed to compare.
    """
    out: list[SeedSpread] = []
    for key in sorted(tables, key=float):
        rows = {str(r.get("method")): r.get("means") for r in tables[key]}
        present = [s for s in seeds if isinstance(rows.get(s), Mapping)]
        if len(present) < 2:
            continue
        spread: dict[str, float | None] = {}
        for figure, _, _ in SPREAD_COLUMNS:
            values = [_figure(rows[s], figure) for s in present]  # type: ignore[arg-type]
            known = [v for v in values if v is not None]
            spread[figure] = max(known) - min(known) if len(known) == len(values) else None
        out.append(SeedSpread(drf=float(key), seeds=tuple(present), spread=spread))
    return out


def seed_spread_markdown(spreads: Sequence[SeedSpread]) -> list[str]:
    """The spread as a markdown section; nothing when there is no second seed."""
    if not spreads:
        return []
    seeds = ", ".join(f"`{s}`" for s in spreads[0].seeds)
    head = ["DRF", *(h for _, h, _ in SPREAD_COLUMNS)]
    rows = [
        [f"{s.drf:g}", *(cell(s.spread.get(k), fmt) for k, _, fmt in SPREAD_COLUMNS)]
        for s in spreads
    ]
    # At DRF 1 the output is nearly the input and PSNR runs to 70 dB and more, where a
    # difference says nothing about denoising: the summary is over the reduced doses.
    psnr = [v for s in spreads if s.drf > 1.0 and (v := s.spread.get("psnr_db")) is not None]
    summary = (
        f"Largest PSNR spread below full dose {max(psnr):.2f} dB, "
        f"mean {sum(psnr) / len(psnr):.2f} dB."
        if psnr
        else "No reduced-dose PSNR to compare."
    )
    return [
        "### Seed-to-seed spread",
        "",
        f"The same recipe trained with other seeds ({seeds}): largest minus smallest mean over "
        "the seeds, per DRF. A difference between models smaller than this is within what a "
        "reseed moves.",
        "",
        *grid_lines(head, rows),
        "",
        summary,
        "",
    ]
