"""Plain frozen records the state store takes and gives: no ORM object leaves the store.

Column values are coerced to their enums here, once, at the boundary (``SeriesView.of``);
everything above the store compares ``SeriesState`` and ``PendingStep`` members, never strings.
What a transition writes beside the state is a ``SeriesUpdate``, so the type checker sees every
column a caller sets.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.pipeline.schema import SeriesRow
from service.pipeline.states import PendingStep, SeriesState


@dataclass(frozen=True)
class ReceivedInstance:
    """What the listener learnt about one stored instance (header facts only)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    calling_aet: str
    modality: str
    series_description: str
    spool_key: str
    sha256: str
    size_bytes: int
    slice_position_mm: float | None
    expected_instances: int | None
    outcome_state: SeriesState  # RECEIVING for eligible input, else IGNORED / REJECTED
    outcome_reason: str


@dataclass(frozen=True)
class SeriesView:
    """A read-only snapshot of a series row, safe to pass between layers."""

    series_instance_uid: str
    study_instance_uid: str
    calling_aet: str
    modality: str
    series_description: str
    state: SeriesState
    state_reason: str
    state_changed_at: float
    expected_instances: int | None
    received_instances: int
    first_received_at: float
    last_received_at: float
    completeness_reason: str
    completed_at: float | None
    lease_expires_at: float | None
    attempts: int
    last_error: str
    pending_step: PendingStep
    output_series_uid: str | None
    output_key: str | None
    output_instances: int | None
    algorithm: str
    drf_estimate: float | None
    inference_seconds: float | None
    written_at: float | None
    done_at: float | None
    purged_at: float | None

    @classmethod
    def of(cls, row: SeriesRow) -> SeriesView:
        """Snapshot an ORM row, coercing the state and pending step to their enums."""
        values = {name: getattr(row, name) for name in cls.__dataclass_fields__}
        values["state"] = SeriesState(row.state)
        values["pending_step"] = PendingStep(row.pending_step)
        return cls(**values)


@dataclass(frozen=True)
class InstanceView:
    """A read-only snapshot of an instance row."""

    sop_instance_uid: str
    sop_class_uid: str
    spool_key: str
    sha256: str
    slice_position_mm: float | None
    received_at: float


@dataclass(frozen=True)
class TransitionView:
    """One entry of a series' audit trail."""

    from_state: str
    to_state: str
    reason: str
    at: float


@dataclass(frozen=True)
class DerivedOutput:
    """The derived series a denoise job wrote: recorded with the move to WRITTEN."""

    series_uid: str
    key: str  # spool key of the output folder
    instances: int
    algorithm: str  # name and versions, at most 128 characters
    drf_estimate: float | None
    inference_seconds: float
    written_at: float


@dataclass(frozen=True)
class SeriesUpdate:
    """Columns a transition writes beside the state; ``None`` leaves a column as it is.

    None of these columns is ever cleared back to NULL by a transition, so ``None`` is free
    to mean "unchanged".
    """

    pending_step: PendingStep | None = None
    last_error: str | None = None
    attempts: int | None = None
    last_received_at: float | None = None
    completeness_reason: str | None = None
    completed_at: float | None = None
    output: DerivedOutput | None = None
    done_at: float | None = None
    purged_at: float | None = None

    def apply_to(self, row: SeriesRow) -> None:
        """Write the given columns onto ``row`` (inside the store's transaction)."""
        if self.pending_step is not None:
            row.pending_step = self.pending_step.value
        if self.last_error is not None:
            row.last_error = self.last_error
        if self.attempts is not None:
            row.attempts = self.attempts
        if self.last_received_at is not None:
            row.last_received_at = self.last_received_at
        if self.completeness_reason is not None:
            row.completeness_reason = self.completeness_reason
        if self.completed_at is not None:
            row.completed_at = self.completed_at
        if self.output is not None:
            self._apply_output(row, self.output)
        if self.done_at is not None:
            row.done_at = self.done_at
        if self.purged_at is not None:
            row.purged_at = self.purged_at

    @staticmethod
    def _apply_output(row: SeriesRow, output: DerivedOutput) -> None:
        row.output_series_uid = output.series_uid
        row.output_key = output.key
        row.output_instances = output.instances
        row.algorithm = output.algorithm
        row.drf_estimate = output.drf_estimate
        row.inference_seconds = output.inference_seconds
        row.written_at = output.written_at


#: A transition that writes nothing beside the state (and the lease).
NO_UPDATE = SeriesUpdate()
