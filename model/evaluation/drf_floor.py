"""How exactly a simulated full dose is "DRF 1", and the floor that sets for any DRF estimate.

    python -m model.evaluation.drf_floor DATASET [DATASET ...]

A clinical phantom's full-dose count level is set so that its liver noise meets a target:
the scanner profile's reference CoV for a 75 kg patient, scaled by sqrt(weight / 75 kg),
times a drawn patient-to-patient factor (``model.simulate.scanner.patient_cov_factor``), and
calibrated on a short noisy pilot, so it lands near that target rather than on it. An
estimate that reads the image's noise perfectly and knows the scanner and the weight still
expects the noise of the population's standard acquisition: it is off by the drawn factor
and by the landing error, each squared on the DRF (noise variance goes with 1/counts).

Per phantom this prints the noise a standard acquisition of that patient would have without
the draw (the population noise), the drawn target, the noise the full dose has (its liver,
image minus noise-free image) and the DRF factor a perfect estimate would be off by. The
summary gives the median factor for the draw alone, the landing alone and both: the last is
the floor of the median factor error of any image-based estimate on these phantoms.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.simulate.acquisition import drawn_patient_cov_factor, noise_target
from model.simulate.dataset import load_study
from model.simulate.metrics import liver_mask, region_cov
from model.simulate.scanner import REFERENCE_WEIGHT_KG
from model.simulate.types import SimulatedStudy

__all__ = ["Landing", "landing_of", "main", "median_factor"]

MIN_LIVER_VOXELS = 200


@dataclass(frozen=True)
class Landing:
    """Liver noise of one simulated full dose against what its count level aimed at."""

    seed: int
    scanner: str
    population_noise: float  # a standard acquisition of this patient, no patient draw
    target_noise: float  # with the drawn patient factor: what the calibration aimed at
    actual_noise: float  # what the full-dose image has

    @property
    def draw(self) -> float:
        """log of the drawn factor on the noise."""
        return math.log(self.target_noise / self.population_noise)

    @property
    def landing(self) -> float:
        """log of how far the calibration landed from its target."""
        return math.log(self.actual_noise / self.target_noise)


def landing_of(study: SimulatedStudy) -> Landing | None:
    """The landing of one study; None for the fixed study sizes (no clinical target), a
    study without its noise-free image, or one with too little liver to measure."""
    scanner = study.scanner
    factor = drawn_patient_cov_factor(scanner, study.seed)
    if factor is None or scanner.reference_liver_cov is None or study.noise_free_bqml is None:
        return None
    liver = liver_mask(study.organ_labels, study.lesion_labels)
    if int(liver.sum()) < MIN_LIVER_VOXELS:
        return None
    clean = study.noise_free_bqml
    texture = region_cov(clean, liver)
    weight_scale = math.sqrt(study.tracer.patient_weight_kg / REFERENCE_WEIGHT_KG)
    population = scanner.reference_liver_cov * weight_scale
    noise = np.std((study.full_dose_bqml - clean)[liver].astype(np.float64))
    return Landing(
        seed=study.seed,
        scanner=scanner.name,
        population_noise=noise_target(population, texture),
        target_noise=noise_target(population * factor, texture),
        actual_noise=float(noise / clean[liver].mean(dtype=np.float64)),
    )


def median_factor(log_noise_ratios: Sequence[float]) -> float:
    """Median DRF factor error of noise ratios given as logs: exp(median |2 log|).

    Raises:
        ValueError: no ratios.
    """
    if not log_noise_ratios:
        raise ValueError("no phantoms to summarise")
    return math.exp(float(np.median(np.abs(2.0 * np.asarray(log_noise_ratios)))))


def _phantom_files(dataset: Path) -> list[Path]:
    """Every phantom file of a dataset folder, all splits."""
    manifest = json.loads((dataset / "manifest.json").read_text())
    return [dataset / entry["file"] for entry in manifest["phantoms"]]


def main(argv: Sequence[str] | None = None) -> int:
    """Print each phantom's landing and the floors; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+", help="dataset folders")
    args = parser.parse_args(argv)
    landings = []
    print("| seed | scanner | population noise | drawn target | full-dose noise | DRF factor |")
    print("|---|---|---|---|---|---|")
    for dataset in args.datasets:
        for path in _phantom_files(dataset):
            found = landing_of(load_study(path))
            if found is None:
                continue
            landings.append(found)
            factor = math.exp(2.0 * (found.draw + found.landing))
            print(
                f"| {found.seed} | {found.scanner} | {found.population_noise:.3f} "
                f"| {found.target_noise:.3f} | {found.actual_noise:.3f} | {factor:.2f} |"
            )
    if not landings:
        print("no clinical phantom with a noise-free image and a liver", file=sys.stderr)
        return 2
    draws, lands = [x.draw for x in landings], [x.landing for x in landings]
    print(
        f"\n{len(landings)} phantoms. Median DRF factor error of an estimate exact but for: "
        f"the patient draw {median_factor(draws):.3f}, the calibration's landing "
        f"{median_factor(lands):.3f} (log noise sd {np.std(lands):.3f}), both "
        f"{median_factor([d + x for d, x in zip(draws, lands, strict=True)]):.3f}."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
