"""Command line: train UniPET or a baseline, reproducibly from a config and its seed.

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

The code lives in ``model.training``; this module is its command line.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from pathlib import Path

from model.training.config import TrainConfig, add_config_flags, load_config
from model.training.run import train

__all__ = ["config_from_args", "main"]


def _parser() -> argparse.ArgumentParser:
    """One ``--flag`` per config field (flags override ``--config``)."""
    p = argparse.ArgumentParser(
        prog="python -m model.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="JSON file with TrainConfig fields")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument(
        "--stop-after-seconds",
        type=float,
        default=None,
        help="checkpoint and stop after this many seconds of this segment (resume continues)",
    )
    p.add_argument(
        "--batch-scale",
        type=int,
        default=1,
        help="train with this many times the batch, in as many times fewer steps, learning "
        "rates times its square root (a GPU's recipe; the config saved holds the result)",
    )
    add_config_flags(p)
    return p


def config_from_args(argv: Sequence[str] | None) -> tuple[TrainConfig, bool]:
    """Defaults, then the JSON file, then command-line flags; and whether to resume.

    Raises:
        ValueError: the JSON file has an unknown or mistyped field.
    """
    return _config_of(_parser().parse_args(argv))


def _config_of(args: argparse.Namespace) -> tuple[TrainConfig, bool]:
    flags = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainConfig)}
    config = load_config(args.config, flags).with_batch_scale(args.batch_scale)
    return config, bool(args.resume)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints progress lines and the exported weights path."""
    args = _parser().parse_args(argv)
    config, resume = _config_of(args)
    if not config.dataset_dir:
        print("error: --dataset-dir is required")
        return 2
    weights = train(config, resume, lambda line: print(line, flush=True), args.stop_after_seconds)
    if weights is None:
        print(f"stopped: resume with --resume --out-dir {config.out_dir}")
        return 0
    print(f"wrote {weights}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
