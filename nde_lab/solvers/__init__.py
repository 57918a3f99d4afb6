"""The solver seam: the only place that calls torchdiffeq, torchsde and scipy's ODE integrators."""

from nde_lab.solvers.brownian import GridBrownian, interval_brownian, make_grid
from nde_lab.solvers.ode import (
    ODE_METHODS,
    ODEMethod,
    ODESolution,
    ODESolverOptions,
    SolverStats,
    solve_ode,
)
from nde_lab.solvers.registry import MethodInfo, check_choice
from nde_lab.solvers.sde import (
    SDE_METHODS,
    SDEMethod,
    SDEMethodInfo,
    SDESolution,
    SDESolverOptions,
    SDESolverStats,
    solve_sde,
    valid_methods,
)

__all__ = [
    "ODE_METHODS",
    "SDE_METHODS",
    "GridBrownian",
    "MethodInfo",
    "ODEMethod",
    "ODESolution",
    "ODESolverOptions",
    "SDEMethod",
    "SDEMethodInfo",
    "SDESolution",
    "SDESolverOptions",
    "SDESolverStats",
    "SolverStats",
    "check_choice",
    "interval_brownian",
    "make_grid",
    "solve_ode",
    "solve_sde",
    "valid_methods",
]
