"""Slices per forward pass: the bare network's seconds for one volume at each batch size.

    python benchmarks/bench_slices_per_pass.py --size full --device cuda   # a GPU host
    python benchmarks/bench_slices_per_pass.py --size tiny                 # CI: seconds

``model.inference`` denoises a volume a few slices at a time (``CPU_BATCH_SLICES``,
``GPU_BATCH_SLICES``). On a GPU, small passes leave the device idle between launches and
copies; large ones cost memory. This times ``denoise_suv`` (the network over the body box,
no DRF estimate) for several ``batch_slices`` on the same volume and checks that every
batch size gives the volume of the first, so a faster setting is also a correct one. The
peer in the same run is the current default for the device.

Weights: the newest shipped ``model/weights/unipet-*.safetensors`` (speed does not depend
on the weight values). Volume: i.i.d. gamma noise of SUV mean 1 over a body-sized box,
400x192x192 at ``full``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from bench_unipet_inference import shipped_weights

from model import load_denoiser
from model.inference import CPU_BATCH_SLICES, GPU_BATCH_SLICES

SHAPES = {"tiny": (24, 64, 64), "full": (400, 192, 192)}
BATCHES = {"tiny": (1, 2, 4), "full": (2, 4, 8, 16, 32, 64)}
TOLERANCE_SUV = 0.01


def volume(shape: tuple[int, int, int]) -> np.ndarray:
    """Gamma noise (SUV mean 1) inside a body box 80 % of the plane, air around it."""
    rng = np.random.default_rng(0)
    suv = np.zeros(shape, dtype=np.float32)
    _, height, width = shape
    body = (
        slice(None),
        slice(height // 10, height - height // 10),
        slice(width // 10, width - width // 10),
    )
    suv[body] = rng.gamma(4.0, 0.25, size=suv[body].shape).astype(np.float32)
    return suv


def seconds(fn: object, repeats: int, device: torch.device) -> float:
    """Median wall seconds of ``fn()`` after one warm-up, the device synchronised."""
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    weights = shipped_weights()
    if weights is None:
        print("no shipped weights found", file=sys.stderr)
        return 1
    suv = volume(SHAPES[args.size])
    device = torch.device(args.device)
    default = CPU_BATCH_SLICES if device.type == "cpu" else GPU_BATCH_SLICES
    print(f"volume {suv.shape}, device {device}, weights {weights.name}, default {default}")
    if device.type == "cuda":
        print(f"gpu: {torch.cuda.get_device_name(device)}")
    reference = None
    figures: dict[int, float] = {}
    for batch in sorted({*BATCHES[args.size], default}):
        denoiser = load_denoiser(
            weights, threads=args.threads, device=args.device, batch_slices=batch
        )
        out = denoiser.denoise_suv(suv)
        if reference is None:
            reference = out
        # 2.5D: each slice sees the same context whatever the batch. Only the arithmetic
        # moves: on a GPU cuDNN picks other convolution kernels (TF32) per batch size, which
        # moved voxels by up to 1.5e-3 SUV on an H200; 0.01 SUV is far below any reading.
        error = float(np.abs(out - reference).max())
        figures[batch] = seconds(lambda d=denoiser: d.denoise_suv(suv), args.repeats, device)
        print(f"batch_slices {batch:3d}: {figures[batch]:7.3f} s  max |diff| {error:.2e}")
        if error > TOLERANCE_SUV:
            print(f"batch_slices {batch} changes the volume", file=sys.stderr)
            return 1
    best = min(figures, key=figures.__getitem__)
    print(
        f"fastest batch_slices {best}: {figures[best]:.3f} s; "
        f"ratio to the default ({default}): {figures[best] / figures[default]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
