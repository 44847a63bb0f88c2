"""Tracer tables: mean SUV per organ, dose and timing per radiopharmaceutical.

The phantom paints each organ with a mean SUVbw drawn around these values, so a simulated
study has the organ contrast a reader expects from a clinical scan of that tracer. Values are
typical adult means from the literature cited next to each table; the spread is the
between-patient variation the generator draws from (uniform within ``[low, high]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TRACERS", "TracerSpec", "get_tracer"]

F18_HALF_LIFE_S = 6586.2  # 109.77 min, NNDC / DDEP recommended value
GA68_HALF_LIFE_S = 4057.7  # 67.63 min, NNDC / DDEP recommended value


@dataclass(frozen=True)
class TracerSpec:
    """One radiopharmaceutical: what it is, how much is given, where it goes."""

    tracer: str
    radiopharmaceutical: str
    radionuclide: str
    half_life_s: float
    activity_mbq_per_kg: tuple[float, float]
    uptake_time_s: tuple[float, float]
    suv_range: dict[str, tuple[float, float]]

    def draw_suv(self, rng: np.random.Generator) -> dict[str, float]:
        """Draw one patient's mean SUV per organ, uniform within each range."""
        return {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in self.suv_range.items()}


# 18F-FDG, 60 min uptake, fasting patient. Sources (adult means):
# - liver 2.0-2.6, blood pool (aorta) 1.5-2.0: Boellaard R et al., EANM procedure guidelines
#   for tumour imaging v2.0, EJNMMI 2015;42:328 (EARL reference regions); Wahl RL et al.,
#   PERCIST, J Nucl Med 2009;50:122S (liver SUL 1.5-2.5 corresponds to SUVbw ~2-3.2).
# - grey matter 7-10, white matter ~2.5-3.5 (GM/WM ~2.5-3): Bentourkia M et al., J Neurol
#   Sci 2000;181:19; clinical whole-body series report cortex SUVmean 7-9.
# - myocardium 1.5-10, highly variable with fasting state: Khandani AH et al., Clin Nucl Med
#   2005;30:237 (normal variants of myocardial FDG uptake).
# - spleen 1.6-2.2 (spleen/liver ~0.85), bone marrow 1.2-2.0, muscle 0.5-1.0, fat 0.2-0.4,
#   lung 0.4-0.7: Zincirkeser S et al., Mol Imaging Radionucl Ther 2007;16:21 (normal organ
#   SUVs in 100 FDG PET/CT studies); Paquet N et al., J Nucl Med 2004;45:784.
# - kidney parenchyma 2-3.5, renal pelvis and bladder urine 8-60 (renal excretion):
#   Zincirkeser 2007; Lin EC, Alavi A, PET and PET/CT, a clinical guide, Thieme 2009.
# - stomach wall 1.3-2.2, bowel 0.9-1.6, salivary glands 1.5-2.5: Zincirkeser 2007.
FDG = TracerSpec(
    tracer="fdg",
    radiopharmaceutical="Fluorodeoxyglucose F^18^",
    radionuclide="18F",
    half_life_s=F18_HALF_LIFE_S,
    activity_mbq_per_kg=(3.0, 4.0),  # EANM 2015: ~3.5 MBq/kg at 2 min/bed
    uptake_time_s=(55 * 60.0, 75 * 60.0),
    suv_range={
        "fat": (0.2, 0.4),
        "muscle": (0.5, 1.0),
        "grey_matter": (7.0, 9.5),
        "white_matter": (2.5, 3.5),
        "lung": (0.4, 0.7),
        "myocardium": (1.5, 10.0),
        "blood_pool": (1.5, 2.0),
        "liver": (2.0, 2.6),
        "spleen": (1.6, 2.2),
        "kidney": (2.0, 3.5),
        "renal_pelvis": (8.0, 25.0),
        "bladder": (10.0, 40.0),
        "bone": (0.3, 0.6),
        "marrow": (1.2, 2.0),
        "stomach": (1.3, 2.2),
        "bowel": (0.9, 1.6),
        "salivary": (1.5, 2.5),
    },
)

# 68Ga-PSMA-11, 60 min uptake. Sources (adult SUVmean): Prasad V et al., EJNMMI Res 2016;6:6
# (biodistribution of 68Ga-PSMA-HBED-CC: kidney ~30-40, salivary ~10-15, liver ~5, spleen
# ~6, bowel ~3-4); Demirci E et al., Nucl Med Commun 2018;39:389 (normal uptake; blood pool
# ~1.5, bone marrow ~1, muscle ~0.6-1, lung ~0.4, brain <0.3). Fat and cortical bone are set
# to background-like values. Dose: EANM/SNMMI guideline 1.8-2.2 MBq/kg (Fendler WP et al.,
# EJNMMI 2017;44:1014).
PSMA = TracerSpec(
    tracer="psma",
    radiopharmaceutical="Gallium Ga^68^ gozetotide (PSMA-11)",
    radionuclide="68Ga",
    half_life_s=GA68_HALF_LIFE_S,
    activity_mbq_per_kg=(1.8, 2.2),
    uptake_time_s=(50 * 60.0, 70 * 60.0),
    suv_range={
        "fat": (0.1, 0.3),
        "muscle": (0.5, 1.0),
        "grey_matter": (0.15, 0.3),
        "white_matter": (0.1, 0.2),
        "lung": (0.3, 0.5),
        "myocardium": (1.0, 2.0),
        "blood_pool": (1.2, 2.0),
        "liver": (4.0, 7.0),
        "spleen": (5.0, 9.0),
        "kidney": (25.0, 45.0),
        "renal_pelvis": (20.0, 50.0),
        "bladder": (15.0, 60.0),
        "bone": (0.3, 0.6),
        "marrow": (0.8, 1.5),
        "stomach": (1.0, 2.0),
        "bowel": (2.5, 5.0),
        "salivary": (10.0, 16.0),
    },
)

# 68Ga-DOTATATE, 60 min uptake. Sources (adult SUVmean): Kuyumcu S et al., Ann Nucl Med
# 2013;27:538 (physiologic 68Ga-DOTATATE uptake: spleen ~20-30, kidney ~12-15, liver ~7-9,
# bowel ~2-4); Boy C et al., Nuklearmedizin 2011;50:54 (somatostatin receptor PET normal
# biodistribution: blood pool ~1-1.5, marrow ~1-2, brain ~0.1). Dose: EANM guideline
# 100-200 MBq (Bozkurt MF et al., EJNMMI 2017;44:1588), i.e. ~1.5-2.5 MBq/kg.
DOTATATE = TracerSpec(
    tracer="dotatate",
    radiopharmaceutical="Gallium Ga^68^ dotatate",
    radionuclide="68Ga",
    half_life_s=GA68_HALF_LIFE_S,
    activity_mbq_per_kg=(1.5, 2.5),
    uptake_time_s=(50 * 60.0, 70 * 60.0),
    suv_range={
        "fat": (0.1, 0.3),
        "muscle": (0.5, 0.9),
        "grey_matter": (0.05, 0.15),
        "white_matter": (0.05, 0.1),
        "lung": (0.3, 0.5),
        "myocardium": (0.8, 1.5),
        "blood_pool": (1.0, 1.6),
        "liver": (6.0, 10.0),
        "spleen": (18.0, 30.0),
        "kidney": (11.0, 17.0),
        "renal_pelvis": (10.0, 30.0),
        "bladder": (15.0, 50.0),
        "bone": (0.3, 0.6),
        "marrow": (1.0, 2.0),
        "stomach": (2.0, 5.0),
        "bowel": (2.0, 4.0),
        "salivary": (2.0, 4.0),
    },
)

TRACERS: dict[str, TracerSpec] = {spec.tracer: spec for spec in (FDG, PSMA, DOTATATE)}


def get_tracer(name: str) -> TracerSpec:
    """Look up a tracer by short name; a typo fails loudly rather than simulating FDG."""
    key = name.strip().lower()
    if key not in TRACERS:
        raise ValueError(f"unknown tracer {name!r}; known: {sorted(TRACERS)}")
    return TRACERS[key]
