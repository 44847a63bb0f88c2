"""A series outside the model card's trained ranges is marked wherever the node reports it.

The worker's real denoise job runs the shipped UniPET weights on the session's tiny simulated
series (12 mm pixels, 20 mm slices): far coarser than the voxels UniPET was trained on (1.1.0:
pixels 1.65 to 4.69 mm, slices 1.65 to 5 mm). The same weights with a card whose stated ranges cover
those voxels give a series that is inside, and is not marked.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog
from pet_samples import algorithm
from prometheus_client import REGISTRY
from pydicom import dcmread
from pydicom.dataset import Dataset
from status_samples import complete_and_queue, receive_folder

from model.card import ModelCard, TrainedRanges
from service.config import NodeSettings, load_settings
from service.dicom.report import read_summary, report_dir, write_quality_report
from service.dicom.report_identity import ReportTimes
from service.dicom.volume import load_pet_volume
from service.ops.operator import status_report
from service.ops.status_page import render_status_page
from service.pipeline import jobs
from service.pipeline.inference import shipped_weights
from service.pipeline.jobs import DENOISE_STAGES
from service.pipeline.spool import Spool
from service.pipeline.states import SeriesState
from service.pipeline.store import StateStore
from service.pipeline.worker_context import WorkerContext

S = SeriesState
OUTSIDE = "outside the trained range"


def _stage_seconds_sum(stage: str) -> float:
    value = REGISTRY.get_sample_value("unipet_denoise_stage_seconds_sum", {"stage": stage})
    return value or 0.0


@dataclass(frozen=True)
class Processed:
    """What one run of the denoise job left behind."""

    settings: NodeSettings
    state: StateStore
    series_uid: str
    derivation_description: str
    events: list[MutableMapping[str, Any]]
    stage_seconds_added: dict[str, float]  # to each stage's metric sum by this one job

    def status_page(self) -> str:
        return render_status_page(self.settings, self.state, [])

    def report_summary(self) -> dict[str, object]:
        output_key = self.state.get(self.series_uid).output_key
        assert output_key is not None
        summary = read_summary(report_dir(Path(self.settings.spool.path) / output_key))
        assert summary is not None
        return summary


def _weights_with_ranges(folder: Path, ranges: TrainedRanges) -> Path:
    """The shipped weights in ``folder``, beside their card with stated trained ranges."""
    shipped = shipped_weights()
    assert shipped is not None
    folder.mkdir()
    weights = folder / shipped.name
    shutil.copyfile(shipped, weights)
    card = ModelCard.from_text(shipped.with_suffix(".json").read_text())
    stated = dataclasses.replace(card, data=dataclasses.replace(card.data, trained_ranges=ranges))
    weights.with_suffix(".json").write_text(stated.to_text())
    return weights


def _process(tmp_path: Path, study_dir: Path, weights: Path | None) -> Iterator[Processed]:
    """Receive, complete, denoise (the worker's job) and deliver the DRF 20 series."""
    model = {"backend": "unipet", "device": "cpu", "threads": 1}
    settings = load_settings(
        spool={"path": str(tmp_path / "spool")},
        model={**model, "weights": str(weights)} if weights else model,
    )
    ctx = WorkerContext(settings, Spool(settings.spool.path), StateStore(settings.database_url))
    try:
        uid = receive_folder(ctx.spool, ctx.state, study_dir / "drf20", "SCANNER1")
        complete_and_queue(ctx.state, uid, ctx.state.get(uid).received_instances)
        before = {stage: _stage_seconds_sum(stage) for stage in DENOISE_STAGES}
        with structlog.testing.capture_logs() as events:
            assert jobs.denoise(ctx, uid).done
        added = {stage: _stage_seconds_sum(stage) - before[stage] for stage in DENOISE_STAGES}
        written = ctx.state.get(uid)
        assert written.state is S.WRITTEN and written.output_key is not None
        derived = sorted(ctx.spool.path_of(written.output_key).glob("*.dcm"))
        descriptions = {
            str(dcmread(p, stop_before_pixels=True).DerivationDescription) for p in derived
        }
        assert len(descriptions) == 1
        # Delivery moves on: the note must outlive the WRITTEN state.
        ctx.state.transition(uid, S.SENDING, "sending derived series", expect=[S.WRITTEN])
        ctx.state.transition(uid, S.DONE, "stored at pacs", expect=[S.SENDING])
        yield Processed(settings, ctx.state, uid, descriptions.pop(), events, added)
    finally:
        ctx.state.close()


@pytest.fixture
def outside(tmp_path: Path, tiny_study_dir: Path) -> Iterator[Processed]:
    """Processed with the shipped card and its trained ranges."""
    yield from _process(tmp_path, tiny_study_dir, None)


@pytest.fixture
def inside(tmp_path: Path, tiny_study_dir: Path) -> Iterator[Processed]:
    """Processed with a card whose stated ranges hold the tiny series' voxels and any DRF."""
    ranges = TrainedRanges(drf=(1.0, 1e6), pixel_mm=(10.0, 14.0), slice_mm=(15.0, 25.0))
    yield from _process(tmp_path, tiny_study_dir, _weights_with_ranges(tmp_path / "w", ranges))


def test_a_coarse_series_is_marked_in_its_derived_series(outside: Processed) -> None:
    description = outside.derivation_description
    assert f"; {OUTSIDE}: " in description
    assert "pixel 12 mm > 4.69 mm" in description  # UniPET 1.1.0's card
    assert "slice 20 mm > 5 mm" in description
    assert description.endswith(". Not the acquired image.")
    assert len(description) <= 1024


def test_the_note_is_kept_shown_logged_and_reported_alike(outside: Processed) -> None:
    description = outside.derivation_description
    note = description[description.index(OUTSIDE) :].removesuffix(". Not the acquired image.")
    history = outside.state.history(outside.series_uid)
    assert any(t.to_state == S.WRITTEN.value and t.reason.endswith(note) for t in history)
    page = outside.status_page()
    assert f'<td class="range-out">{note.replace(">", "&gt;")}</td>' in page
    rows = status_report(outside.state)["series"]
    assert isinstance(rows, list)
    assert [row["trained_range"] for row in rows] == [note]
    assert outside.report_summary()["trained_range"] == note
    [event] = [e for e in outside.events if e["event"] == "outside_trained_range"]
    assert event["series_uid"] == outside.series_uid
    assert event["pixel_mm"] == (12.0, 12.0) and event["slice_mm"] == pytest.approx(20.0)
    assert event["tracer"] == "fdg"
    assert event["log_level"] == "warning"
    assert f"{OUTSIDE}: " + "; ".join(event["findings"]) == note


def test_a_series_inside_the_stated_ranges_is_not_marked(inside: Processed) -> None:
    assert OUTSIDE not in inside.derivation_description
    assert inside.derivation_description.endswith(
        "negative voxels set to 0 Bq/ml. Not the acquired image."
    )
    assert all(OUTSIDE not in t.reason for t in inside.state.history(inside.series_uid))
    assert OUTSIDE not in inside.status_page()
    assert inside.report_summary()["trained_range"] == ""
    assert not [e for e in inside.events if e["event"] == "outside_trained_range"]


def test_each_stage_of_the_job_is_timed_in_its_metric_and_log(inside: Processed) -> None:
    [event] = [e for e in inside.events if e["event"] == "series_written"]
    logged = {stage: event[f"{stage}_s"] for stage in DENOISE_STAGES}
    assert all(seconds > 0 for seconds in logged.values()), logged
    assert inside.stage_seconds_added == pytest.approx(logged, abs=1e-3)
    # The network's own timer lies inside the inference stage.
    assert event["seconds"] <= logged["inference"] + 1e-3


def _measured_values(sr: Dataset) -> list[str]:
    """Every numeric value of an SR's content tree, in document order."""
    values: list[str] = []

    def walk(items: Sequence[Dataset]) -> None:
        for item in items:
            values.extend(str(v.NumericValue) for v in item.get("MeasuredValueSequence", []))
            walk(item.get("ContentSequence", []))

    walk(sr.ContentSequence)
    return values


def test_the_jobs_report_measures_the_files_it_wrote(inside: Processed, tmp_path: Path) -> None:
    """The job measures while it writes (from the values it stores): its SR must hold the
    numbers a report made afterwards from the written files holds."""
    series = inside.state.get(inside.series_uid)
    assert series.output_key is not None
    spool = Spool(inside.settings.spool.path)
    received = load_pet_volume(
        [spool.path_of(i.spool_key) for i in inside.state.instances(series.series_instance_uid)]
    )
    series_dir = spool.path_of(series.output_key)
    [job_sr] = [
        ds
        for ds in (dcmread(p) for p in sorted(report_dir(series_dir).glob("*.dcm")))
        if ds.Modality == "SR"
    ]
    from_files = write_quality_report(
        received,
        tuple(sorted(series_dir.glob("*.dcm"))),
        algorithm(),
        tmp_path / "from-files",
        drf_estimate=series.drf_estimate,
        clipped_voxels=int(str(inside.report_summary()["clipped_voxels"])),
        card=None,
        times=ReportTimes(None, None, None, None),
    )
    numbers = _measured_values(job_sr)
    assert len(numbers) >= 4  # reference region before/after, at least one focus
    assert numbers == _measured_values(dcmread(from_files.sr_path))
