"""One training run's state and steps: generator, critic, optimisers, random state, checkpoints.

Stage 1 trains the generator (SAN included) with the voxel-wise L1 loss. Stage 2 adds the
style-consistency loss and the region-aware (RALS) WGAN-GP adversarial loss; the critic
first trains alone for ``critic_warmup_steps`` so its first gradients are meaningful.

Lesions: ``lesion_loss_weight`` adds the mean L1 over lesion voxels, because with the voxel
mean alone the network learns to flatten small hot spots (lesion SUVmax bias -15 to -35 % in
early runs), and SUVmax is what a physicist reads. ``style_lr_multiplier`` speeds up the style
path, whose zero-initialised affines otherwise leave the codes dose-blind for thousands of
steps; ``lr_schedule cosine`` decays the generator's rate to ``lr_final_fraction``.
``init_weights`` starts from a trained file (the DRF-specific baselines start from the vanilla
universal network).

Everything random comes from ``seed``: the patch sampler's numpy generator, torch's global
generator (weights) and a torch generator for the gradient penalty. A checkpoint stores all
three states, so a resumed run continues with exactly the batch and step it would have taken.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from model.losses import (
    critic_loss,
    generator_adversarial_loss,
    l1_loss,
    lesion_l1_loss,
    rals_mask,
    style_consistency_loss,
)
from model.networks import PatchCritic, UniPETNet
from model.patches import PatchBatch, PatchSampler
from model.training.config import TrainConfig
from model.weights_io import load_network

__all__ = ["Trainer", "generator_param_groups", "lr_factor", "resolve_device"]


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

    def save_checkpoint(self, path: Path, extra: dict[str, object] | None = None) -> None:
        """Everything needed to continue exactly where this step left off; ``extra`` holds
        what the run loop keeps beside the trainer (tensors, strings and numbers only)."""
        state: dict[str, object] = {
            **(extra or {}),
            "config": json.dumps(self.config.to_json_dict()),
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

    def load_checkpoint(self, path: Path) -> dict[str, object]:
        """Restore a checkpoint from :meth:`save_checkpoint` (``weights_only``: no pickled code);
        returns the whole saved state, the run loop's ``extra`` included."""
        # On CPU first: the generator states must stay CPU tensors; modules and optimisers
        # copy their tensors to their own device as they load.
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved_config = TrainConfig.from_json_dict(json.loads(state["config"]))
        saved = saved_config.network()
        if saved != self.config.network():
            raise ValueError(f"checkpoint {path} is of another architecture: {saved}")
        if saved_config.batch_size != self.config.batch_size:
            # A step means another number of samples: the schedule and the exact resume
            # would silently become another recipe (a GPU run resumed without --batch-scale).
            raise ValueError(
                f"checkpoint {path} was trained with batches of {saved_config.batch_size}, "
                f"not {self.config.batch_size}: resume it with the same --batch-scale"
            )
        self.net.load_state_dict(state["net"])
        self.critic.load_state_dict(state["critic"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.gp_generator.set_state(state["gp_generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step_index = int(state["step_index"])
        self.history = json.loads(state["history"])
        return dict(state)
