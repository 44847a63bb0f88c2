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
    def loss(self, net: UniPETNet, device: torch.device) -> dict[str, float]:
        """Mean L1 (SUV) of the centre slice over every patch, overall and per DRF."""
        was_training = net.training
        net.eval()
        centre = self.context_slices // 2
        sums: dict[float, float] = {}
        counts: dict[float, int] = {}
        for chunk in self.chunks:
            low = torch.from_numpy(chunk.low_dose).to(device)
            target = torch.from_numpy(chunk.full_dose[:, centre : centre + 1]).to(device)
            per_patch = (net(low) - target).abs().mean(dim=(1, 2, 3)).cpu().numpy()
            for drf, value in zip(chunk.drf.tolist(), per_patch.tolist(), strict=True):
                sums[drf] = sums.get(drf, 0.0) + value
                counts[drf] = counts.get(drf, 0) + 1
        net.train(was_training)
        result = {"val_l1": sum(sums.values()) / sum(counts.values())}
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
