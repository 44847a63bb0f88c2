"""PET physics simulation: phantoms, tracers, projection, counts, OSEM, multi-DRF studies.

Public entry point: :func:`simulate_study` returns a :class:`SimulatedStudy` with the same
phantom reconstructed at full dose and at each requested dose reduction factor (DRF).
"""

from __future__ import annotations

from model.simulate.study import simulate_study
from model.simulate.types import FloatVolume, LabelVolume, ScannerModel, SimulatedStudy, TracerDose

__all__ = [
    "FloatVolume",
    "LabelVolume",
    "ScannerModel",
    "SimulatedStudy",
    "TracerDose",
    "simulate_study",
]
