"""Values read back from a JSON document that may come from anyone: each one
checked for the type it must have, so that a damaged or hostile document
fails where it is read, with :class:`StateError`, and never later in a sum.

The figures that know how to write themselves as JSON (``to_json``) read
themselves back (``from_json``) with these.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


class StateError(ValueError):
    """A JSON document that does not hold the state it should."""


def expect[T](value: object, kind: type[T], what: str) -> T:
    """``value`` if it is a ``kind`` (a bool is not an int here)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise StateError(f"{what}: expected {kind.__name__}, found {type(value).__name__}")
    return value


def whole(value: object, what: str) -> int:
    """A non-negative integer."""
    number = expect(value, int, what)
    if number < 0:
        raise StateError(f"{what}: expected a count, found {number}")
    return number


def number(value: object, what: str) -> float:
    """A finite number (JSON has no others)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise StateError(f"{what}: expected a number, found {value!r:.40}")
    return float(value) if isinstance(value, float) else value


def optional[T](value: object, read: Callable[[object, str], T], what: str) -> T | None:
    return None if value is None else read(value, what)


def text(value: object, what: str) -> str:
    return expect(value, str, what)


def items(value: object, what: str) -> list[Any]:
    return expect(value, list, what)


def fields(value: object, what: str) -> dict[str, Any]:
    return expect(value, dict, what)


def choice[E](value: object, kinds: Callable[[str], E], what: str) -> E:
    """One of an enumeration's values (a Direction, a Category ...)."""
    try:
        return kinds(text(value, what))
    except ValueError:
        raise StateError(f"{what}: unknown value {value!r:.40}") from None


def pair(value: object, what: str) -> list[Any]:
    """A list of exactly two items (a route, a per-direction figure)."""
    found = items(value, what)
    if len(found) != 2:
        raise StateError(f"{what}: expected two items, found {len(found)}")
    return found
