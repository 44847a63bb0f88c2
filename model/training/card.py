"""The card skeleton a training run leaves beside its weights.

It records what only the training machine knows (the full config, the data it read and the
DRF and voxel ranges it spanned, steps, last losses, wall time, hardware, the DRF
calibration); ``model.package`` later completes it with the evaluation and makes it portable
(``model.card.packaging``).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from model.card import (
    Architecture,
    DatasetSummary,
    EarlierStage,
    Hardware,
    Iterations,
    ModelCard,
    Segment,
    TrainedRanges,
    TrainingData,
    TrainingRecord,
)
from model.card.ranges import span_of
from model.drf_estimate import DrfCalibration
from model.networks import count_parameters
from model.training.trainer import Trainer
from model.weights_io import sha256_file

__all__ = [
    "INTENDED_USE",
    "MODEL_INPUT",
    "MODEL_OUTPUT",
    "earlier_stages",
    "trained_ranges",
    "training_card",
]

INTENDED_USE = "research; denoising of simulated low-dose PET; not for diagnosis"
MODEL_INPUT = "2.5D stack of context_slices slices in SUV (Bq/ml * suv_per_bqml)"
MODEL_OUTPUT = "centre slice in SUV, as input centre + predicted residual"


def _manifest(dataset_dir: Path) -> dict[str, object]:
    """A dataset's manifest, empty when the folder has none."""
    path = dataset_dir / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _dataset_summary(dataset_dir: Path) -> DatasetSummary:
    """Size, tracer and training seeds of a dataset (its manifest's words)."""
    manifest = _manifest(dataset_dir)
    splits = manifest.get("splits")
    seeds = splits.get("train") if isinstance(splits, dict) else None
    size, tracer = manifest.get("size"), manifest.get("tracer")
    return DatasetSummary(
        size=size if isinstance(size, str) else None,
        tracer=tracer if isinstance(tracer, str) else None,
        train_seeds=tuple(int(s) for s in seeds) if isinstance(seeds, list) else None,
    )


def trained_ranges(trainer: Trainer) -> TrainedRanges:
    """DRF and voxel ranges of the studies the run trained on (its sampler's studies).

    Each study's ``spacing_mm`` is (slice, row, column); the pixel span covers rows and
    columns, the slice span the slices, the DRF span the configured DRFs.
    """
    spacings = [study.spacing_mm for study in trainer.sampler.studies]
    return TrainedRanges(
        drf=span_of(trainer.config.drfs),
        pixel_mm=span_of(size for spacing in spacings for size in spacing[1:]),
        slice_mm=span_of(spacing[0] for spacing in spacings),
    )


def earlier_stages(init_weights: Path) -> tuple[EarlierStage, ...]:
    """The stages behind starting weights, oldest first, from the card beside them.

    Weights without a card, or with a card that names other bytes (a file replaced after its
    run), contribute nothing: their history cannot be vouched for.
    """
    card_path = init_weights.with_suffix(".json")
    if not card_path.is_file():
        return ()
    card = ModelCard.from_json(json.loads(card_path.read_text()))
    if card.weights_sha256 != sha256_file(init_weights):
        return ()
    training = card.training
    devices = sorted({segment.device for segment in training.segments})
    own = EarlierStage(
        weights_sha256=card.weights_sha256,
        steps_done=training.steps_done,
        wall_seconds=training.wall_seconds,
        # a run resumed on other hardware names each device (its card lists the segments)
        device="+".join(devices) if len(devices) > 1 else card.hardware.device,
        threads=card.hardware.threads,
    )
    return (*training.earlier_stages, own)


def training_card(
    trainer: Trainer,
    sha256: str,
    seconds: float,
    calibration: DrfCalibration,
    segments: tuple[Segment, ...] = (),
) -> ModelCard:
    """The skeleton card of a finished run: provenance now, evaluation once packaged.

    ``hardware`` is the machine of the last segment; ``segments`` list every machine."""
    config = trainer.config
    main = _dataset_summary(Path(config.dataset_dir))
    return ModelCard(
        name=f"UniPET ({config.variant})",
        version=config.version,
        weights_sha256=sha256,
        architecture=Architecture(
            trainer.net.config, count_parameters(trainer.net), MODEL_INPUT, MODEL_OUTPUT
        ),
        data=TrainingData(
            dataset_dir=config.dataset_dir,
            size=main.size,
            tracer=main.tracer,
            train_seeds=main.train_seeds,
            training_drfs=tuple(float(d) for d in config.drfs),
            extra_datasets=tuple(_dataset_summary(Path(d)) for d in config.extra_dataset_dirs),
            trained_ranges=trained_ranges(trainer),
        ),
        training=TrainingRecord(
            config=config,
            seed=config.seed,
            iterations=Iterations(config.stage1_steps, config.stage2_steps),
            steps_done=trainer.step_index,
            final_losses=next((r for r in reversed(trainer.history) if "val_l1" not in r), {}),
            wall_seconds=round(seconds, 1),
            init_weights_sha256=(
                sha256_file(Path(config.init_weights)) if config.init_weights else None
            ),
            earlier_stages=earlier_stages(Path(config.init_weights)) if config.init_weights else (),
            segments=segments,
        ),
        hardware=Hardware(
            device=str(trainer.device),
            threads=config.threads,
            cpu=platform.processor() or platform.machine(),
            torch=torch.__version__,
        ),
        intended_use=INTENDED_USE,
        drf_calibration=calibration,
    )
