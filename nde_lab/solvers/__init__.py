"""The solver seam: the only place that calls torchdiffeq and torchsde."""

from nde_lab.solvers.ode import (
    ODE_METHODS,
    ODEMethod,
    ODESolution,
    ODESolverOptions,
    SolverStats,
    solve_ode,
)
from nde_lab.solvers.registry import MethodInfo, check_choice

__all__ = [
    "ODE_METHODS",
    "MethodInfo",
    "ODEMethod",
    "ODESolution",
    "ODESolverOptions",
    "SolverStats",
    "check_choice",
    "solve_ode",
]
