"""Evaluation of denoisers on held-out test phantoms: metrics, methods, tables and figures.

``python -m model.evaluate`` is the command line; ``split`` says which phantoms are scored
(simulated afresh or read from dataset folders), ``runner`` scores them in one process and
``parallel`` over several. ``metrics`` scores one output; its lesion figures come from
``lesions`` (SUVmax, SUVpeak), ``nema`` (contrast recovery, background variability) and
``hotspots`` (false hot spots), and ``matched`` makes the Gaussian matched to a network's
noise. ``tables`` makes the per-DRF tables, ``lesion_tables`` the pooled lesion figures,
``groups`` the tables by scanner, ``full_dose`` the full-dose-in check; ``report`` writes
them, ``targets`` checks them, ``drf_accuracy`` scores the DRF estimate, and ``tuning``
chooses the baselines' parameters on validation phantoms. Any method is a callable
``(volume_bqml, spacing_mm, suv_per_bqml) -> volume_bqml``; a trained network becomes one via
:func:`network_method`.
"""

from __future__ import annotations

from model.evaluation.methods import DenoiseFn, Method, network_method, parse_method, parse_methods
from model.evaluation.metrics import CaseMetrics, EvalCase, case_metrics

__all__ = [
    "CaseMetrics",
    "DenoiseFn",
    "EvalCase",
    "Method",
    "case_metrics",
    "network_method",
    "parse_method",
    "parse_methods",
]
