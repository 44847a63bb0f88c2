"""Random 2.5D training patches drawn from a cached simulation dataset.

The dataset is the folder that ``python -m model.simulate.build_dataset`` writes: one npz per
phantom and a ``manifest.json`` that records the split of every seed. Only one split is
read, so training never touches a validation or test phantom. All volumes are converted to
SUV once at load time (see ``model.networks.unipet`` for why the network works in SUV).

Patch centres are drawn from body voxels (full-dose SUV above ``BODY_SUV``): most of a PET
volume is air, and patches of air teach nothing. A fraction of the patches (``lesion_fraction``)
is centred on a lesion voxel instead: lesions fill well under 1 % of the body, so with body
sampling alone the network sees too few of them and learns to flatten small hot spots, which
is exactly the SUVmax a physicist reads. With ``by_volume`` a phantom is drawn in proportion
to its body voxels instead of uniformly, so a clinical 192x192 matrix (8 times the voxels of
a 96x96 one) gets its share of patches when both sizes are mixed.

Every draw comes from the caller's numpy ``Generator``, so a sampler plus the generator's
state reproduces the exact batch sequence, which is what makes training resumable bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from model.simulate.dataset import load_study

__all__ = ["BODY_SUV", "PatchBatch", "PatchSampler", "SuvStudy", "load_split", "slice_stack"]

BODY_SUV = 0.2
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SuvStudy:
    """One phantom in SUV: the full-dose volume and one low-dose volume per DRF."""

    seed: int
    spacing_mm: tuple[float, float, float]
    suv_per_bqml: float
    full_dose_suv: FloatArray
    low_dose_suv: dict[float, FloatArray]
    lesion_labels: npt.NDArray[np.int16] | None = None
    patient_weight_kg: float | None = None  # from the headers; the DRF estimate reads it


@dataclass(frozen=True)
class PatchBatch:
    """A training batch: low-dose and full-dose stacks (N, S, P, P) in SUV, DRF per sample,
    and the lesion mask of the centre slice (N, 1, P, P; zeros where a phantom has none)."""

    low_dose: FloatArray
    full_dose: FloatArray
    drf: npt.NDArray[np.float64]
    lesion_mask: FloatArray | None = None


def load_split(dataset_dir: Path, split: str, drfs: Sequence[float]) -> list[SuvStudy]:
    """Every phantom of ``split`` in the dataset, converted to SUV, with only ``drfs`` kept.

    Raises:
        FileNotFoundError: no manifest in ``dataset_dir``.
        ValueError: the split is empty or a phantom lacks one of ``drfs``.
    """
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    entries = [e for e in manifest["phantoms"] if e["split"] == split]
    if not entries:
        raise ValueError(f"split {split!r} of {dataset_dir} has no phantoms")
    studies = []
    for entry in entries:
        study = load_study(dataset_dir / entry["file"])
        missing = [d for d in drfs if float(d) not in study.low_dose_bqml]
        if missing:
            raise ValueError(f"seed {study.seed} has no DRF {missing}; rebuild the dataset")
        factor = np.float32(study.suv_per_bqml)
        studies.append(
            SuvStudy(
                seed=study.seed,
                spacing_mm=study.spacing_mm,
                suv_per_bqml=study.suv_per_bqml,
                full_dose_suv=study.full_dose_bqml * factor,
                low_dose_suv={float(d): study.low_dose_bqml[float(d)] * factor for d in drfs},
                lesion_labels=study.lesion_labels,
                patient_weight_kg=study.tracer.patient_weight_kg,
            )
        )
    return studies


def slice_stack(
    volume: FloatArray,
    centres: npt.NDArray[np.int64],
    context: int,
    window: tuple[slice, slice] = (slice(None), slice(None)),
) -> FloatArray:
    """Stacks of ``context`` slices around each centre, (len(centres), context, y, x), cut
    to the in-plane ``window`` (whole slices by default).

    Slices beyond the first or last are the edge slice repeated, so the top and bottom of a
    volume are denoised with the same network as the middle. The window is applied while
    indexing, so a training patch copies its own voxels only, not five whole slices (on a
    440x440 matrix that was most of a batch's time).
    """
    half = context // 2
    offsets = np.arange(-half, half + 1)
    index = np.clip(centres[:, None] + offsets[None, :], 0, volume.shape[0] - 1)
    stacks: FloatArray = volume[index, window[0], window[1]]
    return stacks


class PatchSampler:
    """Draws batches of random (DRF, phantom, position, flip) patches."""

    def __init__(
        self,
        studies: Sequence[SuvStudy],
        drfs: Sequence[float],
        context_slices: int,
        patch_size: int,
        lesion_fraction: float = 0.0,
        by_volume: bool = False,
    ) -> None:
        if not studies:
            raise ValueError("a sampler needs at least one study")
        if not 0.0 <= lesion_fraction <= 1.0:
            raise ValueError(f"lesion_fraction {lesion_fraction} is not in [0, 1]")
        self.studies = list(studies)
        self.drfs = [float(d) for d in drfs]
        self.context = context_slices
        self.patch = patch_size
        self.lesion_fraction = lesion_fraction
        self.body = [np.flatnonzero(s.full_dose_suv > BODY_SUV) for s in self.studies]
        self.lesions = [
            np.flatnonzero(s.lesion_labels > 0) if s.lesion_labels is not None else np.empty(0)
            for s in self.studies
        ]
        for study, body in zip(self.studies, self.body, strict=True):
            if body.size == 0 or min(study.full_dose_suv.shape[1:]) < patch_size:
                raise ValueError(f"seed {study.seed}: no body voxels or slices < {patch_size}")
        sizes = np.array([body.size for body in self.body], dtype=np.float64)
        self.study_probabilities = sizes / sizes.sum() if by_volume else None

    def _centre(self, rng: np.random.Generator, k: int) -> int:
        """Flat index of a patch centre in study ``k``: a lesion voxel with probability
        ``lesion_fraction`` (when the phantom has lesions), else a body voxel."""
        if (
            self.lesion_fraction > 0.0
            and self.lesions[k].size
            and rng.random() < self.lesion_fraction
        ):
            return int(rng.choice(self.lesions[k]))
        return int(rng.choice(self.body[k]))

    def sample(self, rng: np.random.Generator, batch_size: int) -> PatchBatch:
        """One batch; every random choice comes from ``rng``."""
        low, full, lesion, drfs = [], [], [], []
        for _ in range(batch_size):
            k = (
                int(rng.choice(len(self.studies), p=self.study_probabilities))
                if self.study_probabilities is not None
                else int(rng.integers(len(self.studies)))
            )
            drf = self.drfs[int(rng.integers(len(self.drfs)))]
            study = self.studies[k]
            z, y, x = np.unravel_index(self._centre(rng, k), study.full_dose_suv.shape)
            y0 = int(np.clip(y - self.patch // 2, 0, study.full_dose_suv.shape[1] - self.patch))
            x0 = int(np.clip(x - self.patch // 2, 0, study.full_dose_suv.shape[2] - self.patch))
            window = (slice(y0, y0 + self.patch), slice(x0, x0 + self.patch))
            centre = np.array([z], dtype=np.int64)
            labels = study.lesion_labels
            mask = (
                (labels[z, y0 : y0 + self.patch, x0 : x0 + self.patch] > 0)
                if labels is not None
                else np.zeros((self.patch, self.patch), dtype=bool)
            )
            pair = [
                slice_stack(study.low_dose_suv[drf], centre, self.context, window)[0],
                slice_stack(study.full_dose_suv, centre, self.context, window)[0],
                mask[None],
            ]
            flips = rng.integers(2, size=3)
            for axis, flip in enumerate(flips):
                if flip:
                    pair = [np.flip(p, axis=axis) for p in pair]
            low.append(pair[0])
            full.append(pair[1])
            lesion.append(pair[2])
            drfs.append(drf)
        return PatchBatch(
            low_dose=np.ascontiguousarray(np.stack(low), dtype=np.float32),
            full_dose=np.ascontiguousarray(np.stack(full), dtype=np.float32),
            drf=np.asarray(drfs, dtype=np.float64),
            lesion_mask=np.ascontiguousarray(np.stack(lesion), dtype=np.float32),
        )
