"""Linear attenuation coefficients at 511 keV for the phantom's tissues.

The same labels that carry activity carry attenuation, so the attenuation correction in the
reconstruction matches the emission data exactly, as a CT-based mu-map registered to the PET
would. Values (1/cm at 511 keV) follow the bilinear CT-to-511 keV conversion of Kinahan PE
et al., Med Phys 1998;25:2046, and tables in Bailey DL et al., Positron Emission Tomography,
Springer 2005: water 0.096, soft tissue 0.096-0.099, fat ~0.09, lung 0.02-0.04 (density
0.2-0.35 g/ml), cancellous bone ~0.11-0.12, cortical bone 0.13-0.17.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from model.simulate.phantom import ORGAN_LABELS

__all__ = ["MU_511_PER_CM", "attenuation_map"]

MU_511_PER_CM: dict[str, tuple[float, float]] = {
    "fat": (0.088, 0.092),
    "muscle": (0.097, 0.100),
    "grey_matter": (0.097, 0.099),
    "white_matter": (0.096, 0.098),
    "lung": (0.022, 0.038),
    "myocardium": (0.098, 0.100),
    "blood_pool": (0.098, 0.100),
    "liver": (0.098, 0.101),
    "spleen": (0.098, 0.101),
    "kidney": (0.097, 0.100),
    "renal_pelvis": (0.096, 0.097),
    "bladder": (0.096, 0.097),
    "bone": (0.13, 0.17),
    "marrow": (0.105, 0.12),
    "stomach": (0.094, 0.098),
    "bowel": (0.090, 0.097),
    "salivary": (0.097, 0.099),
}


def attenuation_map(
    labels: npt.NDArray[np.int16], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """mu-map (1/cm at 511 keV) for a label volume; each tissue's value drawn in its range."""
    lut = np.zeros(max(ORGAN_LABELS.values()) + 1, dtype=np.float32)
    for name, code in ORGAN_LABELS.items():
        lo, hi = MU_511_PER_CM[name]
        lut[code] = rng.uniform(lo, hi)
    return lut[labels]
