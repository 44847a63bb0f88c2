"""The model card: typed, read and written as JSON, rendered as markdown, completed at packaging.

``schema`` holds :class:`ModelCard` and its parts (``results`` the measured ones);
``packaging`` completes a training card into the shipped one; ``markdown`` renders it for
readers; ``ranges`` holds the DRF and voxel ranges of the training data.
``model.training.card`` writes the skeleton a training run leaves beside its weights.
"""

from __future__ import annotations

from model.card.markdown import render_markdown
from model.card.packaging import (
    EVALUATION_KEYS,
    OPTIONAL_EVALUATION_KEYS,
    build_dataset_command,
    package_card,
    seed_ranges,
)
from model.card.ranges import TrainedRanges
from model.card.results import DrfAccuracy, Evaluation, MethodMeans
from model.card.schema import (
    Architecture,
    DatasetSummary,
    EarlierStage,
    Hardware,
    Iterations,
    ModelCard,
    Segment,
    TrainingData,
    TrainingRecord,
)

__all__ = [
    "EVALUATION_KEYS",
    "OPTIONAL_EVALUATION_KEYS",
    "Architecture",
    "DatasetSummary",
    "DrfAccuracy",
    "EarlierStage",
    "Evaluation",
    "Hardware",
    "Iterations",
    "MethodMeans",
    "ModelCard",
    "Segment",
    "TrainedRanges",
    "TrainingData",
    "TrainingRecord",
    "build_dataset_command",
    "package_card",
    "render_markdown",
    "seed_ranges",
]
