"""The model card as typed objects, and its JSON form.

Training writes a card skeleton (identity, architecture, data, training, hardware, the DRF
calibration); packaging completes it (evaluation, target checks, benchmark, DRF estimate
accuracy). The JSON is what tools read, the node included (it checks ``weights_sha256`` and
labels output with ``version``), so :meth:`ModelCard.to_json` writes the fields in one fixed
order and :meth:`ModelCard.from_json` reads every field with its type checked: reading a card
and writing it again gives the same file. Optional parts are left out of the JSON when
absent; ``evaluation`` is null until the card is packaged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from model.card._json import JsonObject, Reader, finite_object, omit_none
from model.card.ranges import TrainedRanges, effective_ranges
from model.card.results import DrfAccuracy, Evaluation, target_from_json
from model.drf_estimate import DrfCalibration
from model.errors import CardError
from model.evaluation.targets import TargetCheck
from model.networks import NetworkConfig, StyleInput, StylePooling, Variant
from model.training.config import TrainConfig

__all__ = [
    "Architecture",
    "DatasetSummary",
    "EarlierStage",
    "Hardware",
    "Iterations",
    "ModelCard",
    "Segment",
    "TrainedRanges",
    "TrainingData",
    "TrainingRecord",
]


@dataclass(frozen=True)
class Architecture:
    """The network: its config (as in the weights header), size, and what goes in and out."""

    network: NetworkConfig
    parameters: int
    input: str | None = None
    output: str | None = None

    def to_json(self) -> dict[str, object]:
        """The network config's fields, then the size and the input and output notes."""
        return {
            **self.network.to_json_dict(),
            **omit_none(
                [("parameters", self.parameters), ("input", self.input), ("output", self.output)]
            ),
        }

    @classmethod
    def from_json(cls, r: Reader) -> Architecture:
        """Read the architecture (raises CardError on a bad or missing field)."""
        widths = r.integers("widths")
        if len(widths) != 3:
            raise CardError(f"architecture.widths must hold three widths, got {widths}")
        try:
            network = NetworkConfig(
                variant=Variant(r.text("variant")),
                context_slices=r.integer("context_slices"),
                widths=(widths[0], widths[1], widths[2]),
                code_dim=r.integer("code_dim"),
                style_width=r.integer("style_width"),
                style_pooling=StylePooling(r.text("style_pooling")),
                style_input=StyleInput(r.text("style_input")),
                demodulate=r.flag("demodulate"),
                modulate_full_resolution=r.flag("modulate_full_resolution"),
            )
        except ValueError as exc:
            raise CardError(f"architecture: {exc}") from exc
        architecture = cls(
            network, r.integer("parameters"), r.opt_text("input"), r.opt_text("output")
        )
        r.done()
        return architecture


@dataclass(frozen=True)
class DatasetSummary:
    """Size, tracer and training seeds of a further training dataset (its manifest's words)."""

    size: str | None
    tracer: str | None
    train_seeds: tuple[int, ...] | None

    def to_json(self) -> dict[str, object]:
        """All three fields, null when the manifest lacked them."""
        return {"size": self.size, "tracer": self.tracer, "train_seeds": self.train_seeds}

    @classmethod
    def from_json(cls, r: Reader) -> DatasetSummary:
        """Read a dataset summary."""
        summary = cls(r.opt_text("size"), r.opt_text("tracer"), r.opt_integers("train_seeds"))
        r.done()
        return summary


@dataclass(frozen=True)
class TrainingData:
    """What the network was trained on.

    ``dataset_dir`` is the training machine's folder: in the skeleton only, since it means
    nothing elsewhere; the packaged card has ``build_command``, which rebuilds the dataset.
    ``trained_ranges`` is what training measured on the studies it loaded (cards from before
    it have none; :meth:`effective_ranges` then reads them from the recipe).
    """

    size: str | None
    tracer: str | None
    train_seeds: tuple[int, ...] | None
    training_drfs: tuple[float, ...]
    extra_datasets: tuple[DatasetSummary, ...] = ()
    dataset_dir: str | None = None
    build_command: str | None = None
    trained_ranges: TrainedRanges | None = None

    def effective_ranges(self) -> TrainedRanges:
        """The DRF and voxel ranges of the training data.

        The stated ``trained_ranges`` where the card has them; otherwise the span of
        ``training_drfs`` and the voxel sizes of the dataset sizes (``size`` and every
        ``extra_datasets[].size``), as ``model.simulate.geometry.SIZES`` defines them.
        """
        sizes = [self.size, *(d.size for d in self.extra_datasets)]
        return effective_ranges(self.trained_ranges, self.training_drfs, sizes)

    def to_json(self) -> dict[str, object]:
        """The card's ``data`` object."""
        return {
            **omit_none([("dataset_dir", self.dataset_dir)]),
            "size": self.size,
            "tracer": self.tracer,
            "train_seeds": self.train_seeds,
            "training_drfs": self.training_drfs,
            "extra_datasets": [d.to_json() for d in self.extra_datasets],
            **omit_none(
                [
                    (
                        "trained_ranges",
                        self.trained_ranges.to_json() if self.trained_ranges else None,
                    ),
                    ("build_command", self.build_command),
                ]
            ),
        }

    @classmethod
    def from_json(cls, r: Reader) -> TrainingData:
        """Read the data recipe."""
        data = cls(
            dataset_dir=r.opt_text("dataset_dir"),
            size=r.opt_text("size"),
            tracer=r.opt_text("tracer"),
            train_seeds=r.opt_integers("train_seeds"),
            training_drfs=r.numbers("training_drfs"),
            extra_datasets=tuple(DatasetSummary.from_json(d) for d in r.objs("extra_datasets")),
            trained_ranges=_ranges(r.opt_obj("trained_ranges")),
            build_command=r.opt_text("build_command"),
        )
        r.done()
        return data


@dataclass(frozen=True)
class Iterations:
    """Steps of each training stage, as configured."""

    stage1: int
    stage2: int


@dataclass(frozen=True)
class EarlierStage:
    """A run whose weights a later run started from: what it cost and where it ran."""

    weights_sha256: str
    steps_done: int
    wall_seconds: float
    device: str
    threads: int

    def to_json(self) -> dict[str, object]:
        """One entry of the card's ``training.earlier_stages``."""
        return {
            "weights_sha256": self.weights_sha256,
            "steps_done": self.steps_done,
            "wall_seconds": self.wall_seconds,
            "device": self.device,
            "threads": self.threads,
        }

    @classmethod
    def from_json(cls, r: Reader) -> EarlierStage:
        """Read one earlier stage (raises CardError on a missing or mistyped field)."""
        stage = cls(
            weights_sha256=r.text("weights_sha256"),
            steps_done=r.integer("steps_done"),
            wall_seconds=r.number("wall_seconds"),
            device=r.text("device"),
            threads=r.integer("threads"),
        )
        r.done()
        return stage


@dataclass(frozen=True)
class Segment:
    """One stretch of a run between a start or resume and its last checkpoint: where it ran.

    A run resumed on other hardware (a lent GPU, then the CPU chains) has several; a run
    resumed from a checkpoint older than this record starts with one on device
    ``unrecorded``.
    """

    first_step: int
    last_step: int
    wall_seconds: float
    device: str
    threads: int
    torch: str

    def to_json(self) -> dict[str, object]:
        """One entry of the card's ``training.segments``."""
        return {
            "first_step": self.first_step,
            "last_step": self.last_step,
            "wall_seconds": self.wall_seconds,
            "device": self.device,
            "threads": self.threads,
            "torch": self.torch,
        }

    @classmethod
    def from_json(cls, r: Reader) -> Segment:
        """Read one segment (raises CardError on a missing or mistyped field)."""
        segment = cls(
            first_step=r.integer("first_step"),
            last_step=r.integer("last_step"),
            wall_seconds=r.number("wall_seconds"),
            device=r.text("device"),
            threads=r.integer("threads"),
            torch=r.text("torch"),
        )
        r.done()
        return segment


@dataclass(frozen=True)
class TrainingRecord:
    """How the network was trained: the whole config, steps, last losses and wall time.

    ``earlier_stages`` are the runs it started from, oldest first (from the card beside the
    starting weights), so a chained recipe states the steps and hours of every stage; left
    out of the JSON when there are none. ``segments`` say where this run's own steps ran,
    oldest first (left out when not recorded).
    """

    config: TrainConfig
    seed: int
    iterations: Iterations
    steps_done: int
    final_losses: Mapping[str, float]
    wall_seconds: float
    init_weights_sha256: str | None = None
    earlier_stages: tuple[EarlierStage, ...] = ()
    segments: tuple[Segment, ...] = ()

    @property
    def total_steps(self) -> int:
        """Steps of this run and of every stage before it."""
        return self.steps_done + sum(s.steps_done for s in self.earlier_stages)

    @property
    def total_seconds(self) -> float:
        """Training time of this run and of every stage before it."""
        return self.wall_seconds + sum(s.wall_seconds for s in self.earlier_stages)

    def to_json(self) -> dict[str, object]:
        """The card's ``training`` object."""
        earlier = [s.to_json() for s in self.earlier_stages]
        return {
            "config": self.config.to_json_dict(),
            "seed": self.seed,
            "iterations": {"stage1": self.iterations.stage1, "stage2": self.iterations.stage2},
            "steps_done": self.steps_done,
            "final_losses": dict(self.final_losses),
            "wall_seconds": self.wall_seconds,
            "init_weights_sha256": self.init_weights_sha256,
            **({"earlier_stages": earlier} if earlier else {}),
            **({"segments": [s.to_json() for s in self.segments]} if self.segments else {}),
        }

    @classmethod
    def from_json(cls, r: Reader) -> TrainingRecord:
        """Read the training record (raises CardError on a bad config or field)."""
        try:
            config = TrainConfig.from_json_dict(r.obj("config").take_all())
        except ValueError as exc:
            raise CardError(f"training.config: {exc}") from exc
        iterations, losses = r.obj("iterations"), r.obj("final_losses")
        record = cls(
            config=config,
            seed=r.integer("seed"),
            iterations=Iterations(iterations.integer("stage1"), iterations.integer("stage2")),
            steps_done=r.integer("steps_done"),
            final_losses={key: losses.number(key) for key in losses.names()},
            wall_seconds=r.number("wall_seconds"),
            init_weights_sha256=r.opt_text("init_weights_sha256"),
            earlier_stages=tuple(EarlierStage.from_json(e) for e in r.objs("earlier_stages")),
            segments=tuple(Segment.from_json(e) for e in r.objs("segments")),
        )
        iterations.done()
        r.done()
        return record


@dataclass(frozen=True)
class Hardware:
    """Where the network was trained."""

    device: str
    threads: int
    cpu: str
    torch: str

    def to_json(self) -> dict[str, object]:
        """The card's ``hardware`` object."""
        return {
            "device": self.device,
            "threads": self.threads,
            "cpu": self.cpu,
            "torch": self.torch,
        }

    @classmethod
    def from_json(cls, r: Reader) -> Hardware:
        """Read the hardware."""
        hardware = cls(r.text("device"), r.integer("threads"), r.text("cpu"), r.text("torch"))
        r.done()
        return hardware


@dataclass(frozen=True)
class ModelCard:
    """The identity, provenance and measured quality of one weights file."""

    name: str
    version: str
    weights_sha256: str
    architecture: Architecture
    data: TrainingData
    training: TrainingRecord
    hardware: Hardware
    intended_use: str
    evaluation: Evaluation | None = None
    drf_calibration: DrfCalibration | None = None
    targets: tuple[TargetCheck, ...] | None = None
    benchmark: JsonObject | None = None  # copied verbatim from the benchmark's output
    drf_estimate_accuracy: DrfAccuracy | None = None

    def to_json(self) -> JsonObject:
        """The card as a JSON object: fixed field order, non-finite numbers as null."""
        calibration, accuracy = self.drf_calibration, self.drf_estimate_accuracy
        targets = None if self.targets is None else [t.to_json_dict() for t in self.targets]
        return finite_object(
            {
                "name": self.name,
                "version": self.version,
                "weights_sha256": self.weights_sha256,
                "architecture": self.architecture.to_json(),
                "data": self.data.to_json(),
                "training": self.training.to_json(),
                "hardware": self.hardware.to_json(),
                "evaluation": self.evaluation.to_json() if self.evaluation else None,
                "intended_use": self.intended_use,
                **omit_none(
                    [
                        (
                            "drf_calibration",
                            json.loads(calibration.to_json()) if calibration else None,
                        ),
                        ("targets", targets),
                        ("benchmark", self.benchmark),
                        ("drf_estimate_accuracy", accuracy.to_json() if accuracy else None),
                    ]
                ),
            }
        )

    def to_text(self) -> str:
        """The card file's text: strict JSON, one-space indent, final newline."""
        return json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, value: object) -> ModelCard:
        """A card from its parsed JSON.

        Raises:
            CardError: a field is missing, unknown or of the wrong type.
        """
        r = Reader(value, "card")
        evaluation = r.opt_obj("evaluation")
        card = cls(
            name=r.text("name"),
            version=r.text("version"),
            weights_sha256=r.text("weights_sha256"),
            architecture=Architecture.from_json(r.obj("architecture")),
            data=TrainingData.from_json(r.obj("data")),
            training=TrainingRecord.from_json(r.obj("training")),
            hardware=Hardware.from_json(r.obj("hardware")),
            intended_use=r.text("intended_use"),
            evaluation=Evaluation.from_json(evaluation) if evaluation else None,
            drf_calibration=_calibration(r.opt_obj("drf_calibration")),
            targets=(
                tuple(target_from_json(t) for t in r.objs("targets")) if r.has("targets") else None
            ),
            benchmark=r.opt_json("benchmark"),
            drf_estimate_accuracy=_accuracy(r.opt_obj("drf_estimate_accuracy")),
        )
        r.done()
        return card

    @classmethod
    def from_text(cls, text: str) -> ModelCard:
        """A card from the text of its file.

        Raises:
            CardError: not JSON, or not a card (see :meth:`from_json`).
        """
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CardError(f"model card is not JSON: {exc}") from exc
        return cls.from_json(value)


def _calibration(r: Reader | None) -> DrfCalibration | None:
    """The DRF calibration, read by its own type."""
    if r is None:
        return None
    try:
        return DrfCalibration.from_json(json.dumps(dict(r.take_all())))
    except (KeyError, TypeError, ValueError) as exc:
        raise CardError(f"card.drf_calibration is not a DRF calibration: {exc!r}") from exc


def _ranges(r: Reader | None) -> TrainedRanges | None:
    """The stated trained ranges, if the card has them."""
    return None if r is None else TrainedRanges.from_json(r)


def _accuracy(r: Reader | None) -> DrfAccuracy | None:
    """The DRF estimate accuracy, if the card has it."""
    return None if r is None else DrfAccuracy.from_json(r)
