"""Benchmark of UniPET inference on one whole volume: seconds, peak memory, ratio to 3D NLM.

    python benchmarks/bench_unipet_inference.py --size full --threads 2 --json bench.json
    python benchmarks/bench_unipet_inference.py --size tiny   # CI: a few seconds

The targets: a 400x192x192 volume in under 20 s on 2 CPU threads (UniPET 1.1; 1.0 aimed at
60 s), with a peak RSS under 3 GB; the report says PASS or MISS for each.
Figures: the network size (parameters, checkpoint bytes, multiply-adds per voxel), seconds
for the volume as the node's worker calls it (with the voxel size and a patient weight, so
the calibrated DRF estimate runs too; its share is timed again on its own), and the peers
measured in the same run on the same volume: 3D non-local means (the classical denoiser
UniPET must beat, hence the ratio) and the Gaussian filter.

Weights: ``--weights``, else the newest shipped ``model/weights/unipet-*.safetensors``,
else a freshly initialised network of the default architecture (speed does not depend on
the weight values); the output says which.

Volume (``--volume``): ``phantom`` is the DRF 20 reconstruction of a simulated phantom,
cropped or mirrored axially to the preset's slice count (a phantom's length follows its
patient's height); ``gamma`` is i.i.d. gamma noise of the exact shape. The default is the
phantom, except at ``full``: there the gamma volume has the target's exact shape with no
simulation to wait for, and ``--volume phantom`` simulates a full-size phantom first.

Peak RSS is the process's high-water mark, which only grows, so UniPET runs first and its
figure is read before the peers run; the phantom is simulated in a child process so its
memory does not count. UniPET's figure includes the input volume and the interpreter.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import re
import resource
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.flop_counter import FlopCounterMode

import model
from model import load_denoiser
from model.baselines import gaussian_postfilter, nlm_denoise
from model.networks import NetworkConfig, UniPETNet, Variant, count_parameters
from model.simulate.geometry import SIZES as SIM_SIZES
from model.weights_io import save_weights

FloatVolume = npt.NDArray[np.float32]
Spacing = tuple[float, float, float]

#: Volume shapes (z, y, x) of the size presets every benchmark accepts.
SIZES = {"tiny": (8, 40, 40), "small": (180, 96, 96), "full": (400, 192, 192)}
DRF = 20.0
GAMMA_SUV_PER_BQML = 1e-4  # gamma volume: mean 10 kBq/ml = 1 SUV
GAUSSIAN_FWHM_MM = 6.0
PATIENT_WEIGHT_KG = 75.0  # the node passes the headers' weight, so the DRF estimate runs
TARGET_SECONDS = 20.0  # for SIZES["full"] on 2 threads
TARGET_RSS_MIB = 3 * 1024
SHIPPED = Path(model.__file__).parent / "weights"


def shipped_weights(folder: Path = SHIPPED) -> Path | None:
    """The newest ``unipet-<version>.safetensors`` in ``folder`` (numbers compared as numbers)."""

    def key(path: Path) -> list[int | str]:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]

    found = sorted(folder.glob("unipet-*.safetensors"), key=key)
    return found[-1] if found else None


def simulate_low_dose(
    seed: int, drf: float, size: str, threads: int
) -> tuple[FloatVolume, Spacing, float]:
    """The DRF reconstruction of one simulated phantom, its spacing and SUV factor."""
    from model.simulate import simulate_study

    torch.set_num_threads(threads)
    study = simulate_study(seed, [drf], size=size)  # type: ignore[arg-type]
    return study.low_dose_bqml[drf], study.spacing_mm, study.suv_per_bqml


def fit_slices(volume: FloatVolume, n_slices: int) -> FloatVolume:
    """The central ``n_slices`` of ``volume``, or the volume mirrored at its end to reach them."""
    nz = volume.shape[0]
    if nz >= n_slices:
        first = (nz - n_slices) // 2
        return np.ascontiguousarray(volume[first : first + n_slices])
    return np.pad(volume, ((0, n_slices - nz), (0, 0), (0, 0)), mode="symmetric")


def phantom_volume(
    seed: int, size: str, shape: tuple[int, int, int], threads: int
) -> tuple[FloatVolume, Spacing, float]:
    """A simulated low-dose volume of ``shape``, simulated in a child process (see module).

    Raises:
        ValueError: ``shape`` is not the in-plane matrix of ``size``'s simulation.
    """
    matrix = SIM_SIZES[size].matrix
    if shape[1:] != (matrix, matrix):
        raise ValueError(f"a {size} phantom is {matrix}x{matrix} in-plane, not {shape[1:]}")
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        volume, spacing, suv = pool.submit(simulate_low_dose, seed, DRF, size, threads).result()
    return fit_slices(volume, shape[0]), spacing, suv


def gamma_volume(shape: tuple[int, int, int]) -> FloatVolume:
    """Seeded gamma noise around 1 SUV, drawn in float32 so no float64 copy swells the peak."""
    rng = np.random.default_rng(0)
    volume = rng.standard_gamma(4.0, size=shape, dtype=np.float32)
    volume *= np.float32(0.25 / GAMMA_SUV_PER_BQML)
    return volume


def flops_per_voxel(net: UniPETNet) -> float:
    """Forward FLOPs per output voxel (2 per multiply-add) on a 1 x S x 128 x 128 stack."""
    stack = torch.rand(1, net.config.context_slices, 128, 128)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(stack)
    total: int = counter.get_total_flops()
    return total / (128 * 128)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_name() -> str:
    """The CPU model as the kernel names it, else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass(frozen=True)
class Figures:
    """What one run measured, as written to ``--json`` for a model card."""

    shape: tuple[int, int, int]
    spacing_mm: Spacing
    volume: str
    threads: int
    unipet_seconds: float  # the node's whole call: network and DRF estimate
    drf_estimate_seconds: float  # the DRF estimate alone, timed again after
    nlm_seconds: float
    ratio_unipet_to_nlm: float
    gaussian_seconds: float
    peak_rss_mib: float  # UniPET's: read before the peers ran
    peak_rss_with_peers_mib: float
    weights: str
    weights_sha256: str
    parameters: int
    flops_per_voxel: float
    torch: str
    cpu: str


def _parser() -> argparse.ArgumentParser:
    """Arguments of the benchmark."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", choices=sorted(SIZES), default="full", help="volume size preset")
    p.add_argument("--shape", type=int, nargs=3, default=None, help="z y x (overrides --size)")
    p.add_argument("--volume", choices=["phantom", "gamma"], default=None, help="see above")
    p.add_argument("--seed", type=int, default=2000, help="phantom seed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", type=Path, default=None)
    p.add_argument("--variant", choices=[v.value for v in Variant], default="unipet")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    return p


def _volume(args: argparse.Namespace) -> tuple[FloatVolume, Spacing, float]:
    """The benchmark volume, its spacing and SUV factor, as ``--volume`` asks."""
    if args.volume == "phantom":
        volume, spacing, suv = phantom_volume(args.seed, args.size, args.shape, args.threads)
        print(f"volume: phantom seed {args.seed}, DRF {DRF:g}, {args.size}, {volume.shape}")
        return volume, spacing, suv
    spec = SIM_SIZES[args.size]
    print(f"volume: gamma noise {args.shape} (--volume phantom for a simulated phantom)")
    spacing = (spec.slice_mm, spec.pixel_mm, spec.pixel_mm)
    return gamma_volume(args.shape), spacing, GAMMA_SUV_PER_BQML


def _weights(args: argparse.Namespace, tmp: Path) -> tuple[Path, str]:
    """The weights file to time and the name the figures give it."""
    weights: Path | None = args.weights or shipped_weights()
    if weights is not None:
        print(f"weights: {weights}")
        return weights, weights.name
    weights = tmp / "fresh.safetensors"
    torch.manual_seed(0)
    save_weights(UniPETNet(NetworkConfig(variant=Variant(args.variant))), weights, "bench")
    print(f"weights: freshly initialised {args.variant} network (no shipped weights)")
    return weights, f"freshly initialised {args.variant}"


def run(args: argparse.Namespace, tmp: Path) -> Figures:
    """Time UniPET, then the peers, on one volume."""
    volume, spacing, suv = _volume(args)
    weights, weights_name = _weights(args, tmp)
    denoiser = load_denoiser(weights, threads=args.threads, device="cpu")
    net = denoiser.network
    flops = flops_per_voxel(net)
    print(f"parameters {count_parameters(net)}, checkpoint {weights.stat().st_size} bytes")
    print(f"forward FLOPs per voxel {flops:.0f}")
    unipet_s = denoiser.denoise(volume, suv, spacing, PATIENT_WEIGHT_KG).seconds
    unipet_rss = peak_rss_mib()
    estimate_s = timed(lambda: denoiser.estimate_drf(volume, suv, spacing, PATIENT_WEIGHT_KG))
    gaussian_s = timed(lambda: gaussian_postfilter(volume, spacing, GAUSSIAN_FWHM_MM))
    nlm_s = timed(lambda: nlm_denoise(volume, spacing, suv))
    return Figures(
        shape=(volume.shape[0], volume.shape[1], volume.shape[2]),
        spacing_mm=spacing,
        volume=args.volume,
        threads=args.threads,
        unipet_seconds=unipet_s,
        drf_estimate_seconds=estimate_s,
        nlm_seconds=nlm_s,
        ratio_unipet_to_nlm=unipet_s / nlm_s,
        gaussian_seconds=gaussian_s,
        peak_rss_mib=unipet_rss,
        peak_rss_with_peers_mib=peak_rss_mib(),
        weights=weights_name,
        weights_sha256=denoiser.weights_sha256,
        parameters=count_parameters(net),
        flops_per_voxel=flops,
        torch=torch.__version__,
        cpu=cpu_name(),
    )


def report(figures: Figures) -> None:
    """Print the figures, UniPET first, then its peers and the memory peaks."""
    f = figures
    print(
        f"unipet {f.shape} threads={f.threads}: {f.unipet_seconds:.1f} s "
        f"(of which the DRF estimate {f.drf_estimate_seconds:.1f} s)"
    )
    print(f"peer nlm_denoise 3D: {f.nlm_seconds:.1f} s; unipet / nlm {f.ratio_unipet_to_nlm:.2f}")
    print(f"peer gaussian_postfilter {GAUSSIAN_FWHM_MM:g} mm: {f.gaussian_seconds:.1f} s")
    print(f"peak RSS {f.peak_rss_mib:.0f} MiB (UniPET's: read before the peers ran)")
    print(f"peak RSS with the peers {f.peak_rss_with_peers_mib:.0f} MiB")
    if f.shape == SIZES["full"] and f.threads == 2:
        speed = "PASS" if f.unipet_seconds < TARGET_SECONDS else "MISS"
        memory = "PASS" if f.peak_rss_mib < TARGET_RSS_MIB else "MISS"
        print(f"target < {TARGET_SECONDS:g} s on 2 threads: {speed}")
        print(f"target peak RSS < {TARGET_RSS_MIB} MiB: {memory}")


def main() -> None:
    """Run the benchmark, print its figures and optionally write them as JSON."""
    parser = _parser()
    args = parser.parse_args()
    args.shape = tuple(args.shape or SIZES[args.size])
    args.volume = args.volume or ("gamma" if args.size == "full" else "phantom")
    matrix = SIM_SIZES[args.size].matrix
    if args.volume == "phantom" and args.shape[1:] != (matrix, matrix):
        parser.error(f"a {args.size} phantom is {matrix}x{matrix} in-plane; use --volume gamma")
    with tempfile.TemporaryDirectory() as tmp:
        figures = run(args, Path(tmp))
    report(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(figures), indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
