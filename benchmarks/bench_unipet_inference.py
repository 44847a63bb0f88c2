"""Benchmark of UniPET inference: seconds and peak memory for one whole volume on this machine.

    python benchmarks/bench_unipet_inference.py --size full --threads 2 [--weights W]
    python benchmarks/bench_unipet_inference.py --size tiny   # CI: a second

Without ``--weights`` a freshly initialised network of the default architecture is written
to a temporary file first (speed does not depend on the weight values). Prints the network
size (parameters, checkpoint bytes, multiply-adds per voxel), seconds for the volume, and the
process's peak resident memory; and, as a peer measured in the same run, the Gaussian
post-filter on the same volume.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from model import load_denoiser
from model.baselines import gaussian_postfilter
from model.networks import NetworkConfig, UniPETNet, Variant, count_parameters
from model.weights_io import save_weights

#: Volume shapes (z, y, x) of the size presets every benchmark accepts.
SIZES = {"tiny": (8, 40, 40), "small": (180, 96, 96), "full": (400, 192, 192)}


def flops_per_voxel(net: UniPETNet) -> float:
    """Forward FLOPs per output voxel (2 per multiply-add) on a 1 x S x 128 x 128 stack."""
    stack = torch.rand(1, net.config.context_slices, 128, 128)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(stack)
    total: int = counter.get_total_flops()
    return total / (128 * 128)


def main() -> None:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", choices=sorted(SIZES), default="full", help="volume size preset")
    p.add_argument("--shape", type=int, nargs=3, default=None, help="z y x (overrides --size)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--variant", choices=[v.value for v in Variant], default="unipet")
    args = p.parse_args()
    args.shape = args.shape or list(SIZES[args.size])
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        if weights is None:
            weights = Path(tmp) / "bench.safetensors"
            save_weights(UniPETNet(NetworkConfig(variant=Variant(args.variant))), weights, "bench")
        denoiser = load_denoiser(weights, threads=args.threads, device="cpu")
        net = denoiser.network
        print(f"parameters {count_parameters(net)}, checkpoint {weights.stat().st_size} bytes")
        print(f"forward FLOPs per voxel {flops_per_voxel(net):.0f}")
        rng = np.random.default_rng(0)
        volume = rng.gamma(4.0, 2500.0, size=tuple(args.shape)).astype(np.float32)
        result = denoiser.denoise(volume, suv_per_bqml=1e-4)
        print(f"unipet {tuple(args.shape)} threads={args.threads}: {result.seconds:.1f} s")
        start = time.perf_counter()
        gaussian_postfilter(volume, (3.0, 3.6, 3.6), 6.0)
        print(f"peer gaussian_postfilter 6 mm: {time.perf_counter() - start:.1f} s")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
