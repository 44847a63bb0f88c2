"""The training config: every setting a run depends on, its JSON form and its flags.

A run is reproducible from this config and nothing else, so it is saved next to the run's
outputs, inside every checkpoint and in the model card. It is read back from JSON written by
hand (``model/configs/*.json``) or by an earlier version, so reading checks each field's type
and refuses unknown names instead of training with a setting silently dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from model.losses import RALS_THRESHOLD_SUV2
from model.networks import NetworkConfig, StyleInput, StylePooling, Variant

__all__ = [
    "STEP_FIELDS",
    "TRAINING_DRFS",
    "VALIDATION_METRICS",
    "TrainConfig",
    "add_config_flags",
    "field_kind",
    "load_config",
]

TRAINING_DRFS = (4.0, 10.0, 20.0, 50.0, 100.0)


#: Fields counted in steps: a larger batch takes proportionally fewer of them for the same
#: number of training samples (``TrainConfig.with_batch_scale``).
STEP_FIELDS = (
    "stage1_steps",
    "stage2_steps",
    "critic_warmup_steps",
    "checkpoint_every",
    "log_every",
    "validate_every",
    "early_stop_min_steps",
)

#: Settings that only mean something with ``validate_every`` > 0.
_VALIDATION_FIELDS = (
    "validation_patches",
    "early_stop_patience",
    "early_stop_min_delta",
    "early_stop_min_steps",
    "validation_metric",
)
#: What a validation measures: the L1 alone, or the run's own fidelity objective (L1 plus
#: the weighted lesion L1), which a lesion fine-tune must be judged by.
VALIDATION_METRICS = ("l1", "objective")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved next to its outputs as JSON)."""

    dataset_dir: str = ""
    extra_dataset_dirs: tuple[str, ...] = ()
    out_dir: str = "runs/unipet"
    variant: str = Variant.UNIPET.value
    drfs: tuple[float, ...] = TRAINING_DRFS
    context_slices: int = 5
    widths: tuple[int, int, int] = (16, 32, 64)
    code_dim: int = 32
    style_width: int = 16
    style_pooling: str = StylePooling.SLICE.value
    style_input: str = StyleInput.SUV.value
    demodulate: bool = True
    modulate_full_resolution: bool = False
    seed: int = 0
    threads: int = 1
    device: str = "auto"
    batch_size: int = 8
    patch_size: int = 64
    lesion_patch_fraction: float = 0.0
    sample_by_volume: bool = False
    stage1_steps: int = 2000
    stage2_steps: int = 1000
    critic_warmup_steps: int = 100
    mse_weight: float = 0.0
    lesion_loss_weight: float = 0.0
    lr_generator: float = 2e-4
    style_lr_multiplier: float = 1.0
    lr_schedule: str = "constant"
    lr_final_fraction: float = 0.1
    init_weights: str = ""
    lr_critic: float = 1e-4
    style_weight: float = 1.0
    adversarial_weight: float = 1e-3
    gp_weight: float = 10.0
    rals_threshold_suv2: float = RALS_THRESHOLD_SUV2
    checkpoint_every: int = 250
    log_every: int = 25
    # Convergence: every ``validate_every`` steps (0: never) the ``validation_metric`` on a
    # fixed set of ``validation_patches`` patches of the dataset's validation split is
    # measured; the run stops early once ``early_stop_patience`` validations in a row (0:
    # never) improved the best by less than ``early_stop_min_delta`` (relative), and exports
    # the best weights; but not before step ``early_stop_min_steps``: under a cosine schedule
    # the validation loss can stall for thousands of steps while the rate is high and fall
    # again as it decays (UniPET 1.1, seed 1: no gain from 27,000 to 35,000 steps, stopped
    # there at val L1 0.1205, where seed 0 went on from 0.1152 at 35,000 to 0.1124).
    validate_every: int = 0
    validation_patches: int = 512
    early_stop_patience: int = 0
    early_stop_min_delta: float = 0.002
    early_stop_min_steps: int = 0
    validation_metric: str = "l1"
    version: str = "0.1.0-dev"

    def network(self) -> NetworkConfig:
        """Architecture part of the config."""
        return NetworkConfig(
            variant=Variant(self.variant),
            context_slices=self.context_slices,
            widths=self.widths,
            code_dim=self.code_dim,
            style_width=self.style_width,
            style_pooling=StylePooling(self.style_pooling),
            style_input=StyleInput(self.style_input),
            demodulate=self.demodulate,
            modulate_full_resolution=self.modulate_full_resolution,
        )

    def with_batch_scale(self, factor: int) -> TrainConfig:
        """The same recipe, counted in samples, with ``factor`` times the batch.

        A small batch leaves a GPU idle between kernel launches: the step takes about as long
        at 64 patches as at 8. Scaled, a run sees the same patches in the same proportions:
        every step-counted field (``STEP_FIELDS``) is divided by ``factor``, so schedules,
        validations and the early-stop floor fall at the same number of samples, and the
        patience (counted in validations) means the same. The learning rates grow by
        sqrt(factor), the usual rule for Adam, where a larger batch's gradient is less
        noisy by that factor.

        Raises:
            ValueError: ``factor`` is below 1.
        """
        if factor < 1:
            raise ValueError(f"batch scale {factor} must be at least 1")
        if factor == 1:
            return self
        steps = {
            name: max(1, round(getattr(self, name) / factor)) if getattr(self, name) else 0
            for name in STEP_FIELDS
        }
        rate = math.sqrt(factor)
        return TrainConfig.from_json_dict(
            {
                **self.to_json_dict(),
                **steps,
                "batch_size": self.batch_size * factor,
                "lr_generator": self.lr_generator * rate,
                "lr_critic": self.lr_critic * rate,
            }
        )

    @property
    def total_steps(self) -> int:
        """Steps of both stages together."""
        return self.stage1_steps + self.stage2_steps

    def to_json_dict(self) -> dict[str, object]:
        """Every field by name, sequences as lists (what ``json.loads`` gives back).

        The validation fields are left out while validation is off (their defaults), so a
        config, checkpoint or card written before they existed reads and writes back the same.
        """
        values = dataclasses.asdict(self)
        if self.validate_every == 0 and all(
            values[name] == getattr(TrainConfig, name) for name in _VALIDATION_FIELDS
        ):
            for name in ("validate_every", *_VALIDATION_FIELDS):
                del values[name]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_json_dict(cls, values: Mapping[str, object]) -> TrainConfig:
        """A config from JSON fields; absent fields keep their defaults.

        Integers are accepted where a float is due (``"drfs": [4, 10]``) and become floats.

        Raises:
            ValueError: an unknown field, or a value of the wrong type.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"unknown training config fields: {unknown}")
        checked = {name: _coerce(name, fields[name].default, v) for name, v in values.items()}
        metric = checked.get("validation_metric", "l1")
        if metric not in VALIDATION_METRICS:
            raise ValueError(f"validation_metric {metric!r} is not one of {VALIDATION_METRICS}")
        # Each value now has the type of its field's default, which mypy cannot see.
        return cls(**checked)  # type: ignore[arg-type]


def field_kind(default: object) -> type:
    """The scalar type of a field with this default (of its items, for a tuple field)."""
    if isinstance(default, tuple):
        return type(default[0]) if default else str
    return type(default)


def _scalar(name: str, kind: type, value: object) -> object:
    """``value`` as a ``kind`` (bool, int, float or str), checked.

    Raises:
        ValueError: ``value`` is of another type (a bool is no number here).
    """
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise ValueError(f"training config field {name} must be {kind.__name__}, got {value!r}")


def _coerce(name: str, default: object, value: object) -> object:
    """One field's JSON value in the type of its default.

    Raises:
        ValueError: a value of the wrong type.
    """
    kind = field_kind(default)
    if not isinstance(default, tuple):
        return _scalar(name, kind, value)
    if not isinstance(value, list | tuple):
        raise ValueError(f"training config field {name} must be a list, got {value!r}")
    return tuple(_scalar(name, kind, item) for item in value)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per config field, each defaulting to None (not given)."""
    for f in dataclasses.fields(TrainConfig):
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, tuple):
            parser.add_argument(flag, type=field_kind(default), nargs="+", default=None)
        elif isinstance(default, bool):
            # type=bool would read "false" as True: use a paired --x / --no-x switch.
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            parser.add_argument(flag, type=field_kind(default), default=None)


def load_config(path: Path | None, overrides: Mapping[str, object]) -> TrainConfig:
    """Defaults, then the JSON file at ``path``, then ``overrides`` that are not None.

    Raises:
        ValueError: the file is not a JSON object, or a field is unknown or mistyped.
        OSError: the file cannot be read.
    """
    values = json.loads(path.read_text()) if path is not None else {}
    if not isinstance(values, dict):
        raise ValueError(f"{path} must hold a JSON object of training config fields")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_json_dict(values)
