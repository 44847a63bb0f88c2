"""Exceptions raised by the model package.

One base class so a caller can catch everything the model refuses with one ``except``::

    ModelError
    └── WeightsError   (missing, unreadable or mismatched weights / model card)
"""

from __future__ import annotations

__all__ = ["ModelError", "WeightsError"]


class ModelError(Exception):
    """Base class of every error the model package raises on purpose."""


class WeightsError(ModelError):
    """A weights file is missing, corrupt, or does not match the architecture it declares."""
