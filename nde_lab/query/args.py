"""Argument checks shared by every query family: counts and keywords, with the lab's `QueryError`."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Iterable
from typing import Any

from nde_lab.errors import QueryError

__all__ = ["check_count", "check_keywords", "check_positive"]


def check_count(name: str, value: Any, *, minimum: int = 1) -> int:
    """`value` as an int >= `minimum`; a bool, fraction, negative or non-number raises `QueryError` naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral | float) or (
        isinstance(value, float) and not value.is_integer()
    ):
        raise QueryError(f"{name} must be a whole number >= {minimum}, got {value!r}.")
    if int(value) < minimum:
        raise QueryError(f"{name} must be a whole number >= {minimum}, got {value!r}.")
    return int(value)


def check_positive(name: str, value: Any) -> float:
    """`value` as a finite float > 0, else `QueryError` naming `name`."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise QueryError(f"{name} must be a positive number, got {value!r}.") from None
    if not out > 0 or out == float("inf"):
        raise QueryError(f"{name} must be a positive finite number, got {value!r}.")
    return out


def accepted_keywords(method: Callable[..., Any], skip: Iterable[str] = ("self", "run")) -> list[str]:
    """The named keyword parameters of a family's query method (its `**kwargs` catch-all excluded)."""
    params = inspect.signature(method).parameters.values()
    return [p.name for p in params if p.name not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_keywords(verb: str, method: Callable[..., Any], kwargs: dict[str, Any], *, extra: Iterable[str] = ()) -> None:
    """Refuse keywords the family's query method does not name, listing the ones it takes."""
    allowed = [*accepted_keywords(method), *extra]
    unknown = sorted(k for k in kwargs if k not in allowed)
    if unknown:
        raise QueryError(
            f"{verb}() got unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(map(repr, allowed)) or 'no keywords'}."
        )
