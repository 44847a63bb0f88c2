"""Benchmark of the PET simulation: speed, memory and image-quality figures of one study.

    python benchmarks/bench_simulate.py --size tiny            # CI: a few seconds
    python benchmarks/bench_simulate.py --size full --figure docs/figures/simulation_mips.png

Prints: time and peak memory for one phantom at full dose plus DRFs 4, 10, 20, 50, 100 and
the held-out 7, 15, 33, 75; liver CoV per DRF and the fitted exponent of CoV against DRF;
liver SUV bias against full dose and truth; lesion contrast recovery by size; time to build
a small training set; and, as a peer measured in the same run, SciPy's sparse product
against the torch CSR product the projector uses.
"""

from __future__ import annotations

import argparse
import math
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import sparse

from model.simulate import SimulatedStudy, simulate_study
from model.simulate.dataset import build_dataset, default_splits
from model.simulate.filters import gaussian_filter, sigma_voxels
from model.simulate.metrics import (
    lesion_recovery,
    liver_mask,
    log_slope,
    region_cov,
    region_mean,
)
from model.simulate.projector import build_projector
from model.simulate.sinogram import support_mask

ALL_DRFS = [4.0, 10.0, 20.0, 50.0, 100.0, 7.0, 15.0, 33.0, 75.0]


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def report_noise(study: SimulatedStudy) -> None:
    """Liver CoV per DRF, its power law in DRF, and liver SUV bias."""
    mask = liver_mask(study.organ_labels, study.lesion_labels)
    spv = study.suv_per_bqml
    truth = region_mean(study.truth_bqml, mask)
    full = region_mean(study.full_dose_bqml, mask)
    # Texture alone: the truth seen through the scanner's resolution and the post-filter.
    fwhm = math.hypot(study.scanner.resolution_fwhm_mm, study.scanner.postfilter_fwhm_mm)
    texture = region_cov(
        gaussian_filter(study.truth_bqml, sigma_voxels(fwhm, study.spacing_mm)), mask
    )
    print(
        f"liver voxels {int(mask.sum())}, true SUVmean {truth * spv:.3f}, texture CoV {texture:.3f}"
    )
    print(
        f"{'DRF':>6} {'counts':>12} {'SUVmean':>8} {'bias/full':>10} {'bias/truth':>11} "
        f"{'CoV':>7} {'noise CoV':>9}"
    )
    drfs, covs, noise = [1.0], [region_cov(study.full_dose_bqml, mask)], []
    rows = [(1.0, study.full_dose_counts, study.full_dose_bqml)]
    rows += [
        (d, study.low_dose_counts[d], study.low_dose_bqml[d]) for d in sorted(study.low_dose_bqml)
    ]
    for drf, counts, image in rows:
        mean = region_mean(image, mask)
        cov = region_cov(image, mask)
        excess = math.sqrt(max(cov**2 - texture**2, 1e-12))
        noise.append(excess)
        if drf != 1.0:
            drfs.append(drf)
            covs.append(cov)
        print(
            f"{drf:>6g} {counts:>12.4g} {mean * spv:>8.3f} {100 * (mean / full - 1):>9.2f}% "
            f"{100 * (mean / truth - 1):>10.2f}% {cov:>7.3f} {excess:>9.3f}"
        )
    biases = [abs(region_mean(v, mask) / full - 1) for v in study.low_dose_bqml.values()]
    print(
        f"CoV ~ DRF^a: a = {log_slope(drfs, covs):.3f} (total CoV), "
        f"{log_slope(drfs, noise):.3f} (noise only; 0.5 = Poisson)"
    )
    print(
        f"mean |liver bias| over DRFs vs full dose: {100 * float(np.mean(biases)):.2f}%, "
        f"full dose vs truth: {100 * (full / truth - 1):.2f}%"
    )


def report_lesions(study: SimulatedStudy) -> None:
    """Contrast recovery of each lesion at full dose, by size."""
    results = lesion_recovery(
        study.full_dose_bqml,
        study.truth_bqml,
        study.organ_labels,
        study.lesion_labels,
        dict(study.lesion_suv),
        dict(study.lesion_diameter_mm),
        study.suv_per_bqml,
    )
    if not results:
        print("no lesion with a measurable background in this phantom")
        return
    print(f"{'lesion':>6} {'diam mm':>8} {'SUV':>6} {'CRC':>6} {'RCmax':>6}")
    for r in sorted(results, key=lambda r: r.diameter_mm):
        print(
            f"{r.label:>6} {r.diameter_mm:>8.1f} {r.true_suv:>6.2f} {r.crc:>6.2f} {r.rc_max:>6.2f}"
        )
    if len(results) >= 3:
        rho = np.corrcoef([r.diameter_mm for r in results], [r.crc for r in results])[0, 1]
        print(f"correlation of CRC with diameter: {rho:.2f}")


def peer_sparse_product(study: SimulatedStudy) -> None:
    """Time one batched projection with torch CSR (ours) and SciPy CSR (peer)."""
    support = support_mask(study.organ_labels)
    proj = build_projector(support, study.spacing_mm[1], 96, 1)
    x = torch.rand(proj.n_pixels, study.full_dose_bqml.shape[0] * 4)
    a = proj.matrices[0]
    peer = sparse.csr_matrix(
        (a.values().numpy(), a.col_indices().numpy(), a.crow_indices().numpy()),
        shape=tuple(a.shape),
    )
    t0 = time.perf_counter()
    proj.forward(x)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    peer @ x.numpy()
    theirs = time.perf_counter() - t0
    print(
        f"projection of {x.shape[1]} slices: torch CSR {ours:.3f} s, SciPy CSR {theirs:.3f} s "
        f"(SciPy / torch = {theirs / ours:.2f})"
    )


def save_figure(study: SimulatedStudy, path: Path) -> None:
    """Coronal MIPs, inverted grey, head up: full dose and DRF 4, 20, 100 side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("full dose", study.full_dose_bqml)]
    panels += [(f"DRF {d:g}", study.low_dose_bqml[d]) for d in (4.0, 20.0, 100.0)]
    dz, _, dx = study.spacing_mm
    fig, axes = plt.subplots(1, 4, figsize=(12, 7.2), facecolor="white")
    mask = liver_mask(study.organ_labels, study.lesion_labels)
    for ax, (title, image) in zip(axes, panels, strict=True):
        mip = image.max(axis=1)[::-1] * study.suv_per_bqml
        ax.imshow(mip, cmap="gray_r", vmin=0.0, vmax=7.0, aspect=dz / dx, interpolation="bilinear")
        ax.set_title(f"{title}\nliver CoV {100 * region_cov(image, mask):.0f}%", fontsize=11)
        ax.axis("off")
    fig.suptitle(
        f"Simulated FDG PET, coronal MIP (SUV 0-7), seed {study.seed}, "
        f"{study.size}, {study.scanner.name}",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)
    plt.close(fig)
    print(f"figure: {path} ({path.stat().st_size / 1024:.0f} kB)")


def main() -> None:
    """Run every measurement at the requested size."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=["tiny", "small", "full"], default="tiny")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--dataset-n", type=int, default=4, help="phantoms in the timed set")
    parser.add_argument("--figure", type=Path, default=None, help="write the MIP figure here")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    study = simulate_study(seed=args.seed, drfs=ALL_DRFS, size=args.size)
    elapsed = time.perf_counter() - t0
    print(
        f"one {args.size} phantom {study.full_dose_bqml.shape} at full dose + DRFs "
        f"{[f'{d:g}' for d in ALL_DRFS]}: {elapsed:.1f} s, peak RSS {peak_rss_gb():.2f} GB; "
        f"scanner {study.scanner.name} ({study.scanner.osem_iterations} it x "
        f"{study.scanner.osem_subsets} subsets, post-filter "
        f"{study.scanner.postfilter_fwhm_mm:.1f} mm)"
    )
    report_noise(study)
    report_lesions(study)
    peer_sparse_product(study)
    if args.figure is not None:
        save_figure(study, args.figure)
    dataset_size = "tiny" if args.size == "tiny" else "small"
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        list(
            build_dataset(
                Path(tmp), default_splits(args.dataset_n), [4, 10, 20, 50, 100], size=dataset_size
            )
        )
        elapsed = time.perf_counter() - t0
    print(
        f"dataset of {args.dataset_n} {dataset_size} phantoms (DRFs 4-100): {elapsed:.1f} s "
        f"({elapsed / args.dataset_n:.1f} s per phantom)"
    )


if __name__ == "__main__":
    main()
