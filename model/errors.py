"""Exceptions raised by the model package.

One base class so a caller can catch everything the model refuses with one ``except``::

    ModelError
    ├── WeightsError   (missing, unreadable or mismatched weights / model card)
    └── CardError      (a model card this version cannot read)
"""

from __future__ import annotations

__all__ = ["CardError", "ModelError", "WeightsError"]


class ModelError(Exception):
    """Base class of every error the model package raises on purpose."""


class WeightsError(ModelError):
    """A weights file is missing, corrupt, or does not match the architecture it declares."""


class CardError(ModelError):
    """A model card is not what this version writes: a field missing, unknown or mistyped."""
