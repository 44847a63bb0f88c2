"""Small seeded PET inputs shared by the tests of pet, selection, volume, writer, synthetic."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from model.simulate.types import ScannerModel, SimulatedStudy, TracerDose
from service.dicom.provenance import AlgorithmIdentity

DCIODVFY = shutil.which("dciodvfy") or "/usr/bin/dciodvfy"


def make_study(
    seed: int = 3,
    shape: tuple[int, int, int] = (6, 8, 10),
    drfs: tuple[float, ...] = (20.0, 7.5),
) -> SimulatedStudy:
    """A tiny study: a warm ellipsoid with a hot spot, noisier copies per DRF."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*(np.linspace(-1.0, 1.0, n) for n in shape), indexing="ij")
    body = (z**2 + y**2 + x**2) < 0.9
    full = np.where(body, 5000.0, 0.0) + np.where((z > 0.3) & (x < -0.3), 20000.0, 0.0)
    full = (full * rng.uniform(0.9, 1.1, size=shape)).astype(np.float32)
    low = {
        drf: np.clip(full * rng.normal(1.0, 0.05 * np.sqrt(drf), size=shape), 0, None).astype(
            np.float32
        )
        for drf in drfs
    }
    tracer = TracerDose(
        tracer="fdg",
        radiopharmaceutical="Fluorodeoxyglucose F^18^",
        radionuclide="18F",
        half_life_s=6586.2,
        injected_activity_bq=3.2e8,
        uptake_time_s=3600.0,
        patient_weight_kg=72.5,
        patient_height_m=1.76,
        patient_sex="F",
        patient_age_years=54,
    )
    scanner = ScannerModel(
        name="SimPET 600",
        resolution_fwhm_mm=5.0,
        osem_iterations=3,
        osem_subsets=21,
        postfilter_fwhm_mm=4.0,
        scatter_fraction=0.3,
        randoms_fraction=0.2,
    )
    return SimulatedStudy(
        seed=seed,
        size="tiny",
        spacing_mm=(3.0, 4.0, 4.0),
        full_dose_bqml=full,
        low_dose_bqml=low,
        truth_bqml=full,
        organ_labels=body.astype(np.int16),
        lesion_labels=np.zeros(shape, dtype=np.int16),
        tracer=tracer,
        scanner=scanner,
    )


def algorithm(weights_sha256: str = "ab" * 32, **parameters: str) -> AlgorithmIdentity:
    """An algorithm identity as service/inference.py would build it."""
    return AlgorithmIdentity(
        name="UniPET",
        version="1.0.0",
        weights_sha256=weights_sha256,
        description="universal low-dose PET denoiser",
        parameters=parameters,
    )


def dciodvfy_errors(path: Path) -> list[str]:
    """Lines of dciodvfy output that report an error (warnings are not errors)."""
    result = subprocess.run(
        [DCIODVFY, "-new", str(path)], capture_output=True, text=True, check=False
    )
    return [line for line in (result.stdout + result.stderr).splitlines() if "Error" in line]
