"""Reading typed values out of parsed JSON, once, at the boundary of the model card.

A card comes from a file that a person or an older version may have written, so every field
is checked as it is read, with the path of the field in the error; past that point the card
is typed objects and nothing downstream re-checks a type.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeAlias

from model.errors import CardError

__all__ = ["JsonObject", "JsonValue", "Reader", "finite", "finite_object", "omit_none"]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = "dict[str, JsonValue]"


def finite(value: object) -> JsonValue:
    """``value`` as JSON, tuples as lists, non-finite floats as None, so the card is strict JSON.

    Raises:
        CardError: ``value`` holds something JSON has no form for.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    raise CardError(f"{value!r} has no JSON form")


def finite_object(value: Mapping[str, object]) -> JsonObject:
    """:func:`finite` of an object, typed as one."""
    return {str(k): finite(v) for k, v in value.items()}


def omit_none(pairs: Sequence[tuple[str, object]]) -> dict[str, object]:
    """An object of the pairs whose value is not None (optional card fields are left out)."""
    return {key: value for key, value in pairs if value is not None}


class Reader:
    """The fields of one JSON object, each taken once with its type checked.

    :meth:`done` refuses fields nobody took, so a card this version cannot represent in full
    is refused rather than shipped with a part silently dropped.
    """

    def __init__(self, value: object, where: str) -> None:
        if not isinstance(value, Mapping):
            raise CardError(f"{where} must be a JSON object, got {value!r}")
        self._fields: Mapping[str, object] = value
        self._where = where
        self._taken: set[str] = set()

    def _take(self, key: str) -> object:
        """The raw value of ``key`` (None when absent), marked as taken."""
        self._taken.add(key)
        return self._fields.get(key)

    def _error(self, key: str, expected: str, value: object) -> CardError:
        """The error for a field of the wrong type."""
        return CardError(f"{self._where}.{key} must be {expected}, got {value!r}")

    def has(self, key: str) -> bool:
        """Whether the object holds ``key`` (null included)."""
        return key in self._fields

    def names(self) -> list[str]:
        """Names of the fields in file order (none taken yet: read each by its type)."""
        return list(self._fields)

    def opt_text(self, key: str) -> str | None:
        """A text field that may be null or absent."""
        value = self._take(key)
        if value is None or isinstance(value, str):
            return value
        raise self._error(key, "text", value)

    def text(self, key: str) -> str:
        """A text field."""
        value = self.opt_text(key)
        if value is None:
            raise self._error(key, "text", value)
        return value

    def integer(self, key: str) -> int:
        """An integer field."""
        value = self._take(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._error(key, "an integer", value)

    def opt_number(self, key: str) -> float | None:
        """A number that may be null (a non-finite figure) or absent."""
        value = self._take(key)
        if value is None:
            return None
        number = _number(value)
        if number is None:
            raise self._error(key, "a number or null", value)
        return number

    def number(self, key: str) -> float:
        """A number."""
        value = self.opt_number(key)
        if value is None:
            raise self._error(key, "a number", value)
        return value

    def flag(self, key: str) -> bool:
        """A true/false field."""
        value = self._take(key)
        if isinstance(value, bool):
            return value
        raise self._error(key, "true or false", value)

    def _list(self, key: str) -> list[object] | None:
        """A list field, None when null or absent."""
        value = self._take(key)
        if value is None or isinstance(value, list):
            return value
        raise self._error(key, "a list", value)

    def opt_integers(self, key: str) -> tuple[int, ...] | None:
        """A list of integers that may be null or absent."""
        items = self._list(key)
        if items is None:
            return None
        out = tuple(v for v in items if isinstance(v, int) and not isinstance(v, bool))
        if len(out) != len(items):
            raise self._error(key, "a list of integers", items)
        return out

    def opt_texts(self, key: str) -> tuple[str, ...] | None:
        """A list of strings that may be null or absent."""
        items = self._list(key)
        if items is None:
            return None
        out = tuple(v for v in items if isinstance(v, str))
        if len(out) != len(items):
            raise self._error(key, "a list of strings", items)
        return out

    def integers(self, key: str) -> tuple[int, ...]:
        """A list of integers."""
        value = self.opt_integers(key)
        if value is None:
            raise self._error(key, "a list of integers", value)
        return value

    def numbers(self, key: str) -> tuple[float, ...]:
        """A list of numbers."""
        items = self._list(key)
        out = tuple(n for v in items or [] if (n := _number(v)) is not None)
        if items is None or len(out) != len(items):
            raise self._error(key, "a list of numbers", items)
        return out

    def opt_span(self, key: str) -> tuple[float, float] | None:
        """A ``[low, high]`` pair of finite numbers with low <= high, or null or absent."""
        items = self._list(key)
        if items is None:
            return None
        values = [n for v in items if (n := _number(v)) is not None and math.isfinite(n)]
        if len(values) != 2 or len(items) != 2 or values[0] > values[1]:
            raise self._error(key, "[low, high], two numbers with low <= high", items)
        return (values[0], values[1])

    def opt_obj(self, key: str) -> Reader | None:
        """A nested object that may be null or absent."""
        value = self._take(key)
        return None if value is None else Reader(value, f"{self._where}.{key}")

    def obj(self, key: str) -> Reader:
        """A nested object."""
        value = self.opt_obj(key)
        if value is None:
            raise self._error(key, "an object", value)
        return value

    def objs(self, key: str) -> list[Reader]:
        """A list of objects; an absent list is empty."""
        items = self._list(key) or []
        return [Reader(v, f"{self._where}.{key}[{i}]") for i, v in enumerate(items)]

    def opt_json(self, key: str) -> JsonObject | None:
        """A nested object kept as it is (the verbatim parts of the card)."""
        value = self._take(key)
        if value is None:
            return None
        if isinstance(value, Mapping):
            return finite_object(value)
        raise self._error(key, "an object", value)

    def take_all(self) -> Mapping[str, object]:
        """Every field, all taken (for an object that its own type reads, or a free mapping)."""
        self._taken.update(self._fields)
        return self._fields

    def done(self) -> None:
        """Refuse fields that were not taken.

        Raises:
            CardError: naming the unknown fields.
        """
        unknown = [key for key in self._fields if key not in self._taken]
        if unknown:
            raise CardError(f"{self._where} has fields this version does not know: {unknown}")


def _number(value: object) -> float | None:
    """``value`` as a float if it is a JSON number (not a bool), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
