"""Convergence of a run: the loss on fixed validation patches, and when to stop.

Training loss on random batches is too noisy to say a run has converged, and it never sees
phantoms the network has not learned. A fixed set of patches drawn once from the dataset's
validation split (other phantoms, same scanners and doses) gives a figure that is comparable
from one validation to the next. A run has converged when that figure stops improving: the
``ConvergenceTracker`` counts validations since the best one improved by a relative
``min_delta``, and its state goes into every checkpoint so a resumed run decides the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model.networks import UniPETNet
from model.patches import PatchBatch, PatchSampler, SuvStudy

__all__ = ["ConvergenceTracker", "ValidationSet"]

#: Seed offset of the validation patch draw (never the training sampler's stream).
VALIDATION_SEED_OFFSET = 7919
CHUNK = 32


@dataclass(frozen=True)
class ValidationSet:
    """Fixed validation patches in chunks, drawn once from the validation phantoms."""

    chunks: tuple[PatchBatch, ...]
    context_slices: int

    @classmethod
    def draw(
        cls,
        studies: Sequence[SuvStudy],
        drfs: Sequence[float],
        context_slices: int,
        patch_size: int,
        n_patches: int,
        seed: int,
        lesion_fraction: float,
    ) -> ValidationSet:
        """``n_patches`` patches (rounded up to whole chunks) from ``studies``."""
        sampler = PatchSampler(
            studies, drfs, context_slices, patch_size, lesion_fraction=lesion_fraction
        )
        rng = np.random.default_rng(seed + VALIDATION_SEED_OFFSET)
        n_chunks = max(1, -(-n_patches // CHUNK))
        return cls(tuple(sampler.sample(rng, CHUNK) for _ in range(n_chunks)), context_slices)

    @torch.no_grad()
    def loss(
        self, net: UniPETNet, device: torch.device, lesion_weight: float = 0.0
    ) -> dict[str, float]:
        """Figures of the centre slice over every patch: the mean L1 (SUV), overall and per
        DRF; the L1 over all lesion voxels (``val_lesion``); and the fidelity objective
        ``val_objective = val_l1 + lesion_weight * val_lesion`` that training minimises."""
        was_training = net.training
        net.eval()
        centre = self.context_slices // 2
        sums: dict[float, float] = {}
        counts: dict[float, int] = {}
        lesion_error, lesion_voxels = 0.0, 0.0
        for chunk in self.chunks:
            low = torch.from_numpy(chunk.low_dose).to(device)
            target = torch.from_numpy(chunk.full_dose[:, centre : centre + 1]).to(device)
            error = (net(low) - target).abs()
            per_patch = error.mean(dim=(1, 2, 3)).cpu().numpy()
            if chunk.lesion_mask is not None:
                mask = torch.from_numpy(chunk.lesion_mask).to(device)
                lesion_error += float((error * mask).sum())
                lesion_voxels += float(mask.sum())
            for drf, value in zip(chunk.drf.tolist(), per_patch.tolist(), strict=True):
                sums[drf] = sums.get(drf, 0.0) + value
                counts[drf] = counts.get(drf, 0) + 1
        net.train(was_training)
        val_l1 = sum(sums.values()) / sum(counts.values())
        val_lesion = lesion_error / lesion_voxels if lesion_voxels else 0.0
        result = {
            "val_l1": val_l1,
            "val_lesion": val_lesion,
            "val_objective": val_l1 + lesion_weight * val_lesion,
        }
        result.update({f"val_l1_drf{d:g}": sums[d] / counts[d] for d in sorted(sums)})
        return result


@dataclass
class ConvergenceTracker:
    """Best validation loss so far and how many validations have not improved it."""

    patience: int
    min_delta: float
    best: float = float("inf")
    best_step: int = -1
    stale: int = 0

    def update(self, step: int, loss: float) -> bool:
        """Record one validation; True when the run has converged (patience used up)."""
        if self.best_step < 0 or loss < self.best * (1.0 - self.min_delta):
            self.best, self.best_step, self.stale = loss, step, 0
        else:
            self.stale += 1
        return self.patience > 0 and self.stale >= self.patience

    def is_best(self, step: int) -> bool:
        """Whether the validation at ``step`` set the best loss."""
        return self.best_step == step

    def to_json(self) -> dict[str, float | int]:
        """The mutable state, for a checkpoint."""
        return {"best": self.best, "best_step": self.best_step, "stale": self.stale}

    def restore(self, state: dict[str, float | int]) -> None:
        """Inverse of :meth:`to_json`."""
        self.best = float(state["best"])
        self.best_step = int(state["best_step"])
        self.stale = int(state["stale"])
