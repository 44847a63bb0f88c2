"""Training of UniPET and its baselines, reproducible from a config and its seed.

    python -m model.train --dataset-dir DS --out-dir RUN [--config cfg.json] [--resume]
        [--variant unipet|vanilla] [--drfs 4 10 20 50 100] [--stage1-steps N] ...

Stage 1 trains the generator (SAN included) with the voxel-wise L1 loss. Stage 2 adds the
style-consistency loss and the region-aware (RALS) WGAN-GP adversarial loss; the critic
first trains alone for ``critic_warmup_steps`` so its first gradients are meaningful.

Lesions: a fraction ``lesion_patch_fraction`` of the patches is centred on a lesion and
``lesion_loss_weight`` adds the mean L1 over lesion voxels, because with the voxel mean alone
the network learns to flatten small hot spots (lesion SUVmax bias -15 to -35 % in early
runs), and SUVmax is what a physicist reads. Both need the simulation's lesion labels, which
only training has. ``style_lr_multiplier`` speeds up the style path, whose zero-initialised
affines otherwise leave the codes dose-blind for thousands of steps; ``lr_schedule cosine``
decays the generator's rate to ``lr_final_fraction``. ``init_weights`` starts from a
trained file (the DRF-specific baselines start from the vanilla universal network).

The DRF estimate is not learned: a noise statistic is calibrated on the training phantoms after
training (``model.drf_estimate``) and stored with the weights. Baselines use the same code
path: ``--variant vanilla`` (no SAN, no style loss), ``--drfs 20`` (a DRF-specific model) and
``--stage2-steps 0`` (L1 only).

Everything random comes from ``seed``: the patch sampler's numpy generator, torch's global
generator (weights) and a torch generator for the gradient penalty. A checkpoint stores all
three states, so ``--resume`` continues with exactly the batch and step it would have taken.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from model.drf_estimate import DrfCalibration, fit_drf_calibration, noise_features
from model.losses import (
    RALS_THRESHOLD_SUV2,
    critic_loss,
    generator_adversarial_loss,
    l1_loss,
    lesion_l1_loss,
    rals_mask,
    style_consistency_loss,
)
from model.networks import (
    NetworkConfig,
    PatchCritic,
    StyleInput,
    StylePooling,
    UniPETNet,
    Variant,
    count_parameters,
)
from model.patches import PatchBatch, PatchSampler, SuvStudy, load_split
from model.weights_io import load_network, save_weights, sha256_file

__all__ = [
    "TrainConfig",
    "Trainer",
    "calibrate_drf",
    "generator_param_groups",
    "lr_factor",
    "main",
    "resolve_device",
    "train",
]

TRAINING_DRFS = (4.0, 10.0, 20.0, 50.0, 100.0)


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

    @property
    def total_steps(self) -> int:
        """Steps of both stages together."""
        return self.stage1_steps + self.stage2_steps


def generator_param_groups(
    net: UniPETNet, lr: float, style_lr_multiplier: float
) -> list[dict[str, object]]:
    """Backbone at ``lr``; the style path (SAN encoder and the modulation affines) at
    ``lr * style_lr_multiplier``.

    The affines start at zero so an untrained style leaves the backbone plain; that also
    means the style path's first gradients are about 100 times smaller than the backbone's,
    and at one learning rate the codes stay nearly dose-blind for thousands of steps.
    """
    style: list[torch.nn.Parameter] = []
    backbone: list[torch.nn.Parameter] = []
    for name, param in net.named_parameters():
        is_style = name.startswith("style.") or ".affine." in name
        (style if is_style else backbone).append(param)
    groups: list[dict[str, object]] = [{"params": backbone, "lr": lr}]
    if style:
        groups.append({"params": style, "lr": lr * style_lr_multiplier})
    return groups


def lr_factor(schedule: str, step: int, total: int, final_fraction: float) -> float:
    """Learning-rate multiplier at ``step`` of ``total``: 1 for ``constant``; for ``cosine``
    a half cosine from 1 down to ``final_fraction`` at the last step.

    A decaying rate lets the last thousands of steps average out the batch noise that a
    constant rate keeps in the weights (and so in the output's SUV bias from run to run).

    Raises:
        ValueError: an unknown schedule.
    """
    if schedule == "constant":
        return 1.0
    if schedule != "cosine":
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {schedule!r}")
    progress = min(max(step / max(total, 1), 0.0), 1.0)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Trainer:
    """Generator, critic, optimisers and random state of one run; one call per step."""

    def __init__(self, config: TrainConfig, sampler: PatchSampler) -> None:
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.config = config
        self.sampler = sampler
        self.device = resolve_device(config.device)
        self.net = UniPETNet(config.network()).to(self.device)
        self.critic = PatchCritic().to(self.device)
        self.opt_g = torch.optim.Adam(
            generator_param_groups(self.net, config.lr_generator, config.style_lr_multiplier),
            config.lr_generator,
            betas=(0.9, 0.99),
        )
        self.opt_d = torch.optim.Adam(self.critic.parameters(), config.lr_critic, betas=(0.5, 0.9))
        self._base_lr_g = [float(g["lr"]) for g in self.opt_g.param_groups]
        if config.init_weights:
            self.net.load_state_dict(load_network(Path(config.init_weights))[0].state_dict())
        self.rng = np.random.default_rng(config.seed)
        self.gp_generator = torch.Generator().manual_seed(config.seed + 1)
        self.step_index = 0
        self.history: list[dict[str, float]] = []

    def step(self) -> dict[str, float]:
        """Sample a batch and take the next training step; returns its losses."""
        self._set_learning_rates()
        record = self.train_on(self.sampler.sample(self.rng, self.config.batch_size))
        self.history.append(record)
        self.step_index += 1
        return record

    def _set_learning_rates(self) -> None:
        """Scale the generator's groups by the schedule's factor for ``step_index``.

        The factor is a pure function of the step, so a resumed run follows the same curve.
        The critic keeps its rate: it only trains in stage 2, where it must keep up.
        """
        factor = lr_factor(
            self.config.lr_schedule,
            self.step_index,
            self.config.total_steps,
            self.config.lr_final_fraction,
        )
        for group, base in zip(self.opt_g.param_groups, self._base_lr_g, strict=True):
            group["lr"] = base * factor

    def train_on(self, batch: PatchBatch) -> dict[str, float]:
        """One step of whichever stage ``step_index`` is in, on a given batch."""
        low = torch.from_numpy(batch.low_dose).to(self.device)
        full = torch.from_numpy(batch.full_dose).to(self.device)
        lesion = (
            torch.from_numpy(batch.lesion_mask).to(self.device)
            if batch.lesion_mask is not None
            else None
        )
        record: dict[str, float] = {"step": float(self.step_index)}
        stage2_step = self.step_index - self.config.stage1_steps
        if stage2_step < 0:
            record.update(self._generator_step(low, full, mask=None, lesion=lesion))
            record["stage"] = 1.0
            return record
        mask = rals_mask(full, self.config.rals_threshold_suv2)
        record["critic"] = self._critic_step(low, full, mask)
        if stage2_step >= self.config.critic_warmup_steps:
            record.update(self._generator_step(low, full, mask=mask, lesion=lesion))
        record["stage"] = 2.0
        return record

    def _generator_step(
        self,
        low: torch.Tensor,
        full: torch.Tensor,
        mask: torch.Tensor | None,
        lesion: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """Generator update: L1 alone in stage 1 (``mask`` None); in stage 2 also the style
        consistency and the adversarial loss on the RALS ``mask``."""
        cfg = self.config
        self.net.train()
        self.opt_g.zero_grad(set_to_none=True)
        codes = self.net.style_codes(low)
        out = self.net(low, codes)
        centre = cfg.context_slices // 2
        target = full[:, centre : centre + 1]
        losses = {"l1": l1_loss(out, target)}
        if cfg.lesion_loss_weight > 0.0 and lesion is not None:
            losses["lesion"] = cfg.lesion_loss_weight * lesion_l1_loss(out, target, lesion)
        if cfg.mse_weight > 0.0:
            losses["mse"] = cfg.mse_weight * torch.nn.functional.mse_loss(out, target)
        if mask is not None:
            if self.net.style is not None:
                stack = torch.cat([full[:, :centre], out, full[:, centre + 1 :]], dim=1)
                losses["style"] = cfg.style_weight * style_consistency_loss(
                    self.net.style, stack, full
                )
            losses["adv"] = cfg.adversarial_weight * generator_adversarial_loss(
                self.critic, out, mask
            )
        total = torch.stack(list(losses.values())).sum()
        total.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.opt_g.step()
        return {**{k: float(v.detach()) for k, v in losses.items()}, "total": float(total.detach())}

    def _critic_step(self, low: torch.Tensor, full: torch.Tensor, mask: torch.Tensor) -> float:
        """Critic update on masked real (full-dose centre) vs masked fake (output) slices."""
        self.net.eval()
        with torch.no_grad():
            fake = self.net(low)
        centre = self.config.context_slices // 2
        real = full[:, centre : centre + 1]
        self.opt_d.zero_grad(set_to_none=True)
        loss = critic_loss(self.critic, real, fake, mask, self.config.gp_weight, self.gp_generator)
        loss.backward()  # type: ignore[no-untyped-call]
        self.opt_d.step()
        return float(loss.detach())

    def save_checkpoint(self, path: Path) -> None:
        """Everything needed to continue exactly where this step left off."""
        state = {
            "config": json.dumps(dataclasses.asdict(self.config)),
            "step_index": self.step_index,
            "net": self.net.state_dict(),
            "critic": self.critic.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": json.dumps(self.rng.bit_generator.state),
            "gp_generator": self.gp_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": json.dumps(self.history),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        torch.save(state, tmp)
        tmp.replace(path)

    def load_checkpoint(self, path: Path) -> None:
        """Restore a checkpoint from :meth:`save_checkpoint` (``weights_only``: no pickled code)."""
        # On CPU first: the generator states must stay CPU tensors; modules and optimisers
        # copy their tensors to their own device as they load.
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = TrainConfig(**_tuples(json.loads(state["config"]))).network()  # type: ignore[arg-type]
        if saved != self.config.network():
            raise ValueError(f"checkpoint {path} is of another architecture: {saved}")
        self.net.load_state_dict(state["net"])
        self.critic.load_state_dict(state["critic"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.gp_generator.set_state(state["gp_generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step_index = int(state["step_index"])
        self.history = json.loads(state["history"])


def _model_card(
    config: TrainConfig, trainer: Trainer, sha256: str, seconds: float
) -> dict[str, object]:
    """JSON model card skeleton: provenance now, evaluation fields to be filled later."""
    manifest_path = Path(config.dataset_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    last = trainer.history[-1] if trainer.history else {}
    return {
        "name": f"UniPET ({config.variant})",
        "version": config.version,
        "weights_sha256": sha256,
        "architecture": {
            **config.network().to_json_dict(),
            "parameters": count_parameters(trainer.net),
            "input": "2.5D stack of context_slices slices in SUV (Bq/ml * suv_per_bqml)",
            "output": "centre slice in SUV, as input centre + predicted residual",
        },
        "data": {
            "dataset_dir": config.dataset_dir,
            "size": manifest.get("size"),
            "tracer": manifest.get("tracer"),
            "train_seeds": manifest.get("splits", {}).get("train"),
            "training_drfs": list(config.drfs),
            "extra_datasets": [_dataset_summary(Path(d)) for d in config.extra_dataset_dirs],
        },
        "training": {
            "config": dataclasses.asdict(config),
            "seed": config.seed,
            "iterations": {"stage1": config.stage1_steps, "stage2": config.stage2_steps},
            "steps_done": trainer.step_index,
            "init_weights_sha256": (
                sha256_file(Path(config.init_weights)) if config.init_weights else None
            ),
            "final_losses": last,
            "wall_seconds": round(seconds, 1),
        },
        "hardware": {
            "device": str(trainer.device),
            "threads": config.threads,
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        },
        "evaluation": None,
        "intended_use": "research; denoising of simulated low-dose PET; not for diagnosis",
    }


def _dataset_summary(dataset_dir: Path) -> dict[str, object]:
    """Size, tracer and training seeds of a further dataset (its manifest's words)."""
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    return {
        "size": manifest.get("size"),
        "tracer": manifest.get("tracer"),
        "train_seeds": manifest.get("splits", {}).get("train"),
    }


def calibrate_drf(studies: Sequence[SuvStudy], drfs: Sequence[float]) -> DrfCalibration:
    """Fit the noise-statistic DRF estimate on every (phantom, DRF) volume of the training set.

    Needs at least two phantoms (the fit reports a leave-one-phantom-out error).
    """
    rows, targets, groups = [], [], []
    for study in studies:
        for drf in drfs:
            bqml = study.low_dose_suv[float(drf)] / np.float32(study.suv_per_bqml)
            rows.append(noise_features(bqml, study.suv_per_bqml))
            targets.append(float(drf))
            groups.append(study.seed)
    return fit_drf_calibration(np.stack(rows), targets, groups)


def train(config: TrainConfig, resume: bool, log: Callable[[str], None]) -> Path:
    """Run (or resume) a whole training; returns the path of the exported weights."""
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    studies = load_split(Path(config.dataset_dir), "train", config.drfs)
    for extra in config.extra_dataset_dirs:
        studies += load_split(Path(extra), "train", config.drfs)
    sampler = PatchSampler(
        studies,
        config.drfs,
        config.context_slices,
        config.patch_size,
        lesion_fraction=config.lesion_patch_fraction,
        by_volume=config.sample_by_volume,
    )
    trainer = Trainer(config, sampler)
    checkpoint = out / "checkpoint.pt"
    if resume and checkpoint.is_file():
        trainer.load_checkpoint(checkpoint)
        log(f"resumed at step {trainer.step_index}")
    start = time.perf_counter()
    while trainer.step_index < config.total_steps:
        record = trainer.step()
        if trainer.step_index % config.log_every == 0:
            parts = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "step")
            log(f"step {trainer.step_index} {parts} ({time.perf_counter() - start:.0f} s)")
        if trainer.step_index % config.checkpoint_every == 0:
            trainer.save_checkpoint(checkpoint)
    trainer.save_checkpoint(checkpoint)
    (out / "history.json").write_text(json.dumps(trainer.history))
    calibration = calibrate_drf(studies, config.drfs)
    log(f"DRF calibration: LOO median factor error {calibration.loo_median_factor_error:.2f}")
    weights = out / f"unipet-{config.variant}.safetensors"
    sha256 = save_weights(
        trainer.net, weights, config.version, {"drf_calibration": calibration.to_json()}
    )
    card = _model_card(config, trainer, sha256, time.perf_counter() - start)
    card["drf_calibration"] = json.loads(calibration.to_json())
    weights.with_suffix(".json").write_text(json.dumps(card, indent=1))
    return weights


def _parser() -> argparse.ArgumentParser:
    """One ``--flag`` per config field (flags override ``--config``)."""
    p = argparse.ArgumentParser(
        prog="python -m model.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="JSON file with TrainConfig fields")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    for f in dataclasses.fields(TrainConfig):
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, tuple):
            kind: type = str if not default else float if isinstance(default[0], float) else int
            p.add_argument(flag, type=kind, nargs="+", default=None)
        elif isinstance(default, bool):
            # type=bool would read "false" as True: use a paired --x / --no-x switch.
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            p.add_argument(flag, type=type(default), default=None)
    return p


def _tuples(values: dict[str, object]) -> dict[str, object]:
    """JSON lists back to the tuples the config's sequence fields hold."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def config_from_args(argv: Sequence[str] | None) -> tuple[TrainConfig, bool]:
    """Defaults, then the JSON file, then command-line flags."""
    args = _parser().parse_args(argv)
    values: dict[str, object] = json.loads(args.config.read_text()) if args.config else {}
    for f in dataclasses.fields(TrainConfig):
        given = getattr(args, f.name, None)
        if given is not None:
            values[f.name] = given
    return TrainConfig(**_tuples(values)), bool(args.resume)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints progress lines and the exported weights path."""
    config, resume = config_from_args(argv)
    if not config.dataset_dir:
        print("error: --dataset-dir is required")
        return 2
    weights = train(config, resume, lambda line: print(line, flush=True))
    print(f"wrote {weights}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
