"""Seeds: one independent NumPy generator per (phantom seed, purpose).

Separate streams mean a change in how one thing is drawn (say, lesions) never shifts the
random numbers of another (say, the scanner), so seeds stay comparable across versions.
"""

from __future__ import annotations

import enum

import numpy as np

__all__ = ["Purpose", "rng_for"]


class Purpose(enum.IntEnum):
    """What a random generator is used for; part of its seed."""

    PATIENT = 1
    ANATOMY = 2
    TRACER = 3
    TEXTURE = 4
    LESIONS = 5
    ATTENUATION = 6
    SCANNER = 7
    COUNTS = 8
    THINNING = 9
    CALIBRATION = 10
    NORMALISATION = 11
    SECTION = 12


def rng_for(seed: int, purpose: Purpose, *extra: int) -> np.random.Generator:
    """Independent generator for one purpose of one phantom (NumPy ``SeedSequence``)."""
    return np.random.default_rng([int(purpose), seed, *extra])
