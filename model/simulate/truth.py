"""The noise-free truth of one phantom: activity in Bq/ml, mu-map, labels and dose facts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.simulate.activity import add_lesions, organ_activity
from model.simulate.attenuation import attenuation_map
from model.simulate.geometry import Grid, SizeSpec
from model.simulate.phantom import (
    Patient,
    draw_patient,
    paint_organs,
    patient_grid,
    section_grid,
)
from model.simulate.seeding import Purpose, rng_for
from model.simulate.tracers import get_tracer
from model.simulate.types import FloatVolume, LabelVolume, ScannerModel, TracerDose

__all__ = ["Phantom", "make_phantom"]


def _grid(
    seed: int, size: str, patient: Patient, scanner: ScannerModel | None, liver_centred: bool
) -> Grid:
    """The whole-body grid of a fixed size, or a clinical profile's section."""
    if size != "clinical":
        return patient_grid(patient, size)
    if scanner is None or scanner.matrix is None or scanner.pixel_mm is None:
        raise ValueError("size 'clinical' needs a clinical scanner profile")
    assert scanner.slice_mm is not None and scanner.n_angles is not None
    spec = SizeSpec(scanner.matrix, scanner.pixel_mm, scanner.slice_mm, scanner.n_angles)
    return section_grid(patient, spec, rng_for(seed, Purpose.SECTION), liver_centred)


@dataclass(frozen=True)
class Phantom:
    """Noise-free truth of one patient on one grid, before any scanner is involved."""

    grid: Grid
    truth_bqml: FloatVolume
    mu_per_cm: FloatVolume
    organ_labels: LabelVolume
    lesion_labels: LabelVolume
    lesion_suv: dict[int, float]
    lesion_diameter_mm: dict[int, float]
    tracer: TracerDose


def make_phantom(
    seed: int,
    size: str,
    tracer: str = "fdg",
    scanner: ScannerModel | None = None,
    liver_centred: bool = True,
) -> Phantom:
    """Draw patient, anatomy, uptake, texture, lesions and mu-map for one seed.

    Size ``clinical`` takes its grid from ``scanner`` (a clinical profile) and covers an
    axial section (``model.simulate.phantom.section_grid``), liver-centred or not.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    spec = get_tracer(tracer)
    patient = draw_patient(rng_for(seed, Purpose.PATIENT))
    grid = _grid(seed, size, patient, scanner, liver_centred)
    labels = paint_organs(grid, patient, rng_for(seed, Purpose.ANATOMY))
    dose_rng = rng_for(seed, Purpose.TRACER)
    organ_suv = spec.draw_suv(dose_rng)
    dose = TracerDose(
        tracer=spec.tracer,
        radiopharmaceutical=spec.radiopharmaceutical,
        radionuclide=spec.radionuclide,
        half_life_s=spec.half_life_s,
        injected_activity_bq=round(
            float(dose_rng.uniform(*spec.activity_mbq_per_kg)) * patient.weight_kg * 1e6, -4
        ),
        uptake_time_s=round(float(dose_rng.uniform(*spec.uptake_time_s))),
        patient_weight_kg=patient.weight_kg,
        patient_height_m=patient.height_m,
        patient_sex=patient.sex,
        patient_age_years=patient.age_years,
    )
    suv = organ_activity(labels, organ_suv, grid, rng_for(seed, Purpose.TEXTURE))
    lesion_labels, lesion_suv, diameters = add_lesions(
        grid, labels, suv, organ_suv, rng_for(seed, Purpose.LESIONS)
    )
    decayed_bq = dose.injected_activity_bq * 2.0 ** (-dose.uptake_time_s / dose.half_life_s)
    bqml_per_suv = decayed_bq / (dose.patient_weight_kg * 1000.0)
    return Phantom(
        grid=grid,
        truth_bqml=(suv * np.float32(bqml_per_suv)).astype(np.float32),
        mu_per_cm=attenuation_map(labels, rng_for(seed, Purpose.ATTENUATION)),
        organ_labels=labels,
        lesion_labels=lesion_labels,
        lesion_suv=lesion_suv,
        lesion_diameter_mm=diameters,
        tracer=dose,
    )
