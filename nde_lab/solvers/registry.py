"""String registries of solver methods, with errors that list the valid choices."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass

from nde_lab.errors import SolverError

__all__ = ["MethodInfo", "check_choice"]


@dataclass(frozen=True)
class MethodInfo:
    """What a method declares about itself.

    Attributes:
        order: convergence order (global, deterministic; strong order for SDE methods).
        adaptive: whether it chooses its own step from error estimates.
        stages: vector-field evaluations per step (used for step budgets and statistics).
        implicit: an implicit (stiff) method, solved per batch member by scipy with forward sensitivities.
    """

    order: float
    adaptive: bool
    stages: int = 1
    implicit: bool = False


def check_choice(key: str, value: object, choices: Mapping[str, object] | list[str], error=SolverError) -> None:
    """Raise `error` naming `key`, the bad `value`, the close matches and every valid choice."""
    names = list(choices)
    if value in names:
        return
    close = difflib.get_close_matches(str(value), names, n=3)
    suggestion = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise error(f"{key}={value!r} is not valid; must be one of {', '.join(map(repr, names))}.{suggestion}")
