"""The lab's exception hierarchy: every error a user can cause names what was wrong and the fix."""

from __future__ import annotations

__all__ = [
    "DataError",
    "NdeLabError",
    "RecipeError",
    "RunConflictError",
    "RunDamagedError",
    "RunNotReadyError",
    "SolverError",
    "StoreError",
]


class NdeLabError(Exception):
    """Base class of every error raised by nde-lab on purpose."""


class RecipeError(NdeLabError, ValueError):
    """A recipe value is invalid: the message names the key, the value and the valid choices."""


class DataError(NdeLabError, ValueError):
    """Input data is unusable: the message names the file, the column or dimension, and the problem."""


class SolverError(NdeLabError, RuntimeError):
    """A numerical solve failed: the message names the method, the time reached, the tolerances and a hint."""


class StoreError(NdeLabError, OSError):
    """A run store path or run is invalid (bad name, missing run, unreadable layout)."""


class RunNotReadyError(StoreError):
    """A run was opened that is failed or still running; its status and failure reason are in the message."""


class RunDamagedError(StoreError):
    """A stored run disagrees with its manifest (a missing or altered object); the message names the
    group and variable."""


class RunConflictError(StoreError):
    """Another writer holds or already created the run (or group) being written."""
