"""Argument checks shared by the public constructors and methods: one rule and one message shape for each kind."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["integer", "number"]


def _bound(kind: str, low: float, strict: bool) -> str:
    if low == -math.inf:
        return f"a finite {kind}" if kind == "number" else "an int"
    if low == 0:
        return f"a positive {kind}" if strict else f"a non-negative {kind}"
    if low == 1 and kind == "int" and not strict:
        return "a positive int"
    return f"{'an' if kind == 'int' else 'a'} {kind} {'>' if strict else '>='} {low:g}"


def integer(name: str, value: Any, *, low: float = 1, none: bool = False) -> Any:
    """``value`` when it is an int ``>= low`` (bool excluded; ``None`` too with ``none``; ``low=-math.inf``: any
    int), else ``ValueError`` ``"<name> must be a positive int, got 0"``."""
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be {_bound('int', low, False)}{' or None' if none else ''}, got {value!r}")
    return value


def number(name: str, value: Any, *, low: float = 0.0, strict: bool = False, none: bool = False) -> Any:
    """``value`` as a float when it is a finite real ``>= low`` (``> low`` with ``strict``; bool excluded; ``None``
    too with ``none``), else ``ValueError`` ``"<name> must be a positive number, got -1"``."""
    if value is None and none:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or (value <= low if strict else value < low)):
        raise ValueError(f"{name} must be {_bound('number', low, strict)}{' or None' if none else ''}, got {value!r}")
    return float(value)
