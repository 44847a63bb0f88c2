"""When is a received series complete, and why (the rules below, in this order).

1. ``count``: the number of distinct instances equals NumberOfSlices x NumberOfTimeSlots;
2. ``quiet``: no new instance for the quiet period (per calling AE) and the slice positions
   are contiguous (no gap wider than the usual spacing by more than the tolerance);
3. ``timeout``: nothing arrived for the forced timeout and the series is still not whole:
   it is FAILED with "incomplete: N of M slices", and re-opens if more instances arrive.

``decide`` is a pure function of what the state database knows, so the rules are tested
without a network, and the reason string is what the status page and metrics show.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import structlog

from service import metrics
from service.config import NodeSettings
from service.pipeline.records import SeriesUpdate
from service.pipeline.states import PendingStep, SeriesState
from service.pipeline.store import StateStore

log = structlog.stdlib.get_logger(__name__)

MIN_SLICES_FOR_VOLUME = 3


class Rule(StrEnum):
    """Which completeness rule fired (the ``reason`` label of series_completed_total)."""

    COUNT = "count"
    QUIET = "quiet"
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Decision:
    """A completeness verdict: complete (COUNT/QUIET) or failed (TIMEOUT), with the reason."""

    rule: Rule
    reason: str

    @property
    def complete(self) -> bool:
        """True when the series can go on to processing."""
        return self.rule is not Rule.TIMEOUT


def contiguity_problem(positions: Sequence[float | None], gap_tolerance: float) -> str | None:
    """Why the slice positions are not one gap-free stack, or None if they are.

    A gap is a step larger than the median step by more than ``gap_tolerance`` (fraction);
    duplicate positions are a problem too (two instances claim the same slice).
    """
    if any(p is None for p in positions):
        return "slice position unknown for some instances"
    ordered = sorted(float(p) for p in positions if p is not None)
    if len(ordered) < MIN_SLICES_FOR_VOLUME:
        return f"only {len(ordered)} slices"
    steps = [b - a for a, b in itertools.pairwise(ordered)]
    median_step = statistics.median(steps)
    if median_step <= 0:
        return "duplicate slice positions"
    if min(steps) < median_step * (1 - gap_tolerance):
        return "duplicate or uneven slice positions"
    gaps = sum(1 for step in steps if step > median_step * (1 + gap_tolerance))
    if gaps:
        missing = sum(
            round(step / median_step) - 1
            for step in steps
            if step > median_step * (1 + gap_tolerance)
        )
        return f"{gaps} gap(s) in slice positions, about {missing} slice(s) missing"
    return None


def decide(
    *,
    received: int,
    expected: int | None,
    positions: Sequence[float | None],
    seconds_since_last: float,
    quiet_period_s: float,
    forced_timeout_s: float,
    gap_tolerance: float,
) -> Decision | None:
    """The completeness verdict for a RECEIVING series now, or None to keep waiting."""
    if expected is not None and received >= expected >= MIN_SLICES_FOR_VOLUME:
        return Decision(Rule.COUNT, f"count: {received} of {expected} instances received")
    if seconds_since_last < quiet_period_s:
        return None
    problem = contiguity_problem(positions, gap_tolerance)
    if expected is None and problem is None:
        return Decision(
            Rule.QUIET,
            f"quiet: no instance for {seconds_since_last:.0f} s, {received} contiguous slices",
        )
    if seconds_since_last < forced_timeout_s:
        return None
    of = f"{received} of {expected}" if expected is not None else f"{received} of unknown"
    detail = f" ({problem})" if problem else ""
    return Decision(Rule.TIMEOUT, f"incomplete: {of} slices{detail}")


class CompletenessWatcher:
    """Applies ``decide`` to every RECEIVING series and records the verdicts."""

    def __init__(self, settings: NodeSettings, state: StateStore) -> None:
        self.settings = settings
        self.state = state

    def run_once(self, now: float) -> list[tuple[str, Decision]]:
        """One pass over the receiving series; returns the verdicts it recorded."""
        cfg = self.settings.completeness
        verdicts: list[tuple[str, Decision]] = []
        for series in self.state.in_states([SeriesState.RECEIVING]):
            positions = [
                i.slice_position_mm for i in self.state.instances(series.series_instance_uid)
            ]
            decision = decide(
                received=series.received_instances,
                expected=series.expected_instances,
                positions=positions,
                seconds_since_last=now - series.last_received_at,
                quiet_period_s=self.settings.quiet_period_for(series.calling_aet),
                forced_timeout_s=cfg.forced_timeout_s,
                gap_tolerance=cfg.slice_gap_tolerance,
            )
            if decision is None:
                continue
            target = SeriesState.COMPLETE if decision.complete else SeriesState.FAILED
            changed = self.state.transition(
                series.series_instance_uid,
                target,
                decision.reason,
                expect=[SeriesState.RECEIVING],
                now=now,
                update=SeriesUpdate(
                    completeness_reason=decision.reason,
                    completed_at=now,
                    pending_step=(
                        PendingStep.NONE if decision.complete else PendingStep.COMPLETENESS
                    ),
                ),
            )
            if changed is None:
                continue
            metrics.series_completed_total.labels(reason=decision.rule.value).inc()
            metrics.series_completion_wait_seconds.observe(now - series.first_received_at)
            log.info(
                "series_completeness",
                series_uid=series.series_instance_uid,
                rule=decision.rule.value,
                reason=decision.reason,
            )
            verdicts.append((series.series_instance_uid, decision))
        return verdicts
