"""Mechanistic vector fields f(t, y; theta): named states, parameters, constants and inputs.

`MechanisticField` is the contract between a scientist's model and the lab's solvers and programs:
a subclass names its states and parameters and writes `rhs`; `ODEProgram` draws the parameters from
priors, `solve_ode` integrates it (batched over parameter draws, per-draw adaptive, or by scipy's
stiff solvers with forward sensitivities, which call the functional form `f(t, y, theta)` and, where
a field offers it, the analytic `jacobians` fast path).
"""

from __future__ import annotations

import bisect
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor

from nde_lab.dynamics.base import VectorField

__all__ = ["LOG_FLOOR", "Input", "MechanisticField"]

Coordinates = Literal["natural", "log"]
#: in log coordinates the exponent is clamped to [LOG_FLOOR, log_cap]: a far-out parameter set gives a
#: finite, hopeless trajectory instead of an overflow, and exp never underflows to an exact 0
LOG_FLOOR = -600.0


class Input:
    """A time-dependent input u(t) given as data: piecewise constant ("step": u = values[k] on
    [times[k], times[k+1]), 0 before times[0]) or piecewise linear ("linear", held constant outside).

    Args:
        times: increasing change times, in the series' time units, shape (K,).
        values: the input's values at those times, shape (K,).
        kind: "step" or "linear".
    Its change times are breakpoints of the solve (the field is not smooth there).
    """

    def __init__(self, times: Sequence[float], values: Sequence[float], kind: Literal["step", "linear"] = "step") -> None:
        t = np.asarray(times, dtype=float)
        v = np.asarray(values, dtype=float)
        if t.ndim != 1 or t.shape != v.shape or t.size == 0:
            raise ValueError(f"an input needs 1-D times and values of one length, got shapes {t.shape} and {v.shape}.")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
            raise ValueError("an input's times and values must be finite.")
        if t.size > 1 and not np.all(np.diff(t) > 0):
            raise ValueError(f"an input's times must be strictly increasing, got {t.tolist()}.")
        if kind not in ("step", "linear"):
            raise ValueError(f"an input's kind must be 'step' or 'linear', got {kind!r}.")
        self.times, self.values, self.kind = t, v, kind
        self._time_list, self._value_list = t.tolist(), v.tolist()
        self._tensors: dict[tuple, tuple[Tensor, Tensor]] = {}

    @property
    def breakpoints(self) -> list[float]:
        return self.times.tolist()

    def __call__(self, t: Tensor) -> Tensor | float:
        """u(t): a float for a scalar t (the common case: cheap, and no gradient flows through t), else a
        tensor of t's shape and dtype (per-draw solves step every member at its own time)."""
        if t.ndim == 0:
            return self._at(float(t))
        key = (t.dtype, t.device)
        if key not in self._tensors:
            self._tensors[key] = (torch.as_tensor(self.times, dtype=t.dtype, device=t.device),
                                  torch.as_tensor(self.values, dtype=t.dtype, device=t.device))
        times, values = self._tensors[key]
        if self.kind == "step":
            k = torch.searchsorted(times, t.detach().contiguous(), right=True)  # number of change times <= t
            return torch.cat([values.new_zeros(1), values])[k]
        if times.numel() == 1:
            return values[0].expand(t.shape)
        k = torch.searchsorted(times, t.detach().contiguous(), right=True).clamp(1, times.numel() - 1)
        t0, t1, v0, v1 = times[k - 1], times[k], values[k - 1], values[k]
        w = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0)
        return v0 + w * (v1 - v0)

    def _at(self, t: float) -> float:
        k = bisect.bisect_right(self._time_list, t)
        if self.kind == "step":
            return 0.0 if k == 0 else self._value_list[k - 1]
        if k == 0 or len(self._time_list) == 1:
            return self._value_list[0]
        if k == len(self._time_list):
            return self._value_list[-1]
        t0, t1 = self._time_list[k - 1], self._time_list[k]
        v0, v1 = self._value_list[k - 1], self._value_list[k]
        return v0 + (t - t0) / (t1 - t0) * (v1 - v0)


class MechanisticField(VectorField):
    """dy/dt = f(t, y; theta) for a mechanistic model with named states, parameters and constants.

    A subclass declares (class attributes):
        states: names of the D state components, in order (y[..., i] is states[i]).
        parameters: names of the P inferred parameters (theta[..., k] is parameters[k]).
        constants: names of the known numbers the model needs (doses, volumes, population sizes),
            given in the recipe, never inferred.
        positive: True when every state stays positive, so `coordinates="log"` is allowed.
    and writes `rhs(t, y, p)`. Optionally `initial(p)` (z(t0) as a function of parameters and
    constants), `jump_times(p)` (times where `rhs` jumps, for instance a switch at a constant time),
    and `jacobians` (an analytic fast path for the stiff/sensitivity solvers).

    Args:
        theta: parameter values, shape (*batch, P) (one row per posterior draw or particle).
        constants: name -> number for every name of `constants`.
        inputs: name -> `Input`, time-dependent inputs; `rhs` reads their values at t from `p`.
        coordinates: "natural" integrates y; "log" integrates x = log y (dx/dt = f / y), the same ODE
            for positive states, which stays positive under any step.
        log_cap: in log coordinates, the largest exponent (e^30 by default) before clamping.

    The solvers call `forward(t, y) = f(t, y, self.theta)`; `t` is a scalar tensor, or a tensor of
    shape `batch_shape` when each batch member is stepped on its own (per-draw adaptive solves), so
    `rhs` must treat `t` like a parameter (elementwise, broadcasting).
    """

    states: ClassVar[tuple[str, ...]] = ()
    parameters: ClassVar[tuple[str, ...]] = ()
    constants: ClassVar[tuple[str, ...]] = ()
    positive: ClassVar[bool] = False

    def __init__(self, theta: Tensor, *, constants: Mapping[str, float] | None = None,
                 inputs: Mapping[str, Input] | None = None, coordinates: Coordinates = "natural",
                 log_cap: float = 30.0) -> None:
        super().__init__()
        cls = type(self).__name__
        if not self.states:
            raise ValueError(f"{cls}.states must name at least one state.")
        theta = torch.as_tensor(theta, dtype=torch.get_default_dtype()) if not isinstance(theta, Tensor) else theta
        if theta.ndim == 0 or theta.shape[-1] != len(self.parameters):
            raise ValueError(f"{cls}: theta must have shape (*batch, {len(self.parameters)}) for parameters "
                             f"{list(self.parameters)}, got {tuple(theta.shape)}.")
        constants = dict(constants or {})
        missing = [c for c in self.constants if c not in constants]
        extra = [c for c in constants if c not in self.constants]
        if missing or extra:
            raise ValueError(f"{cls} takes constants {list(self.constants)}; missing {missing}, unknown {extra}.")
        if coordinates not in ("natural", "log"):
            raise ValueError(f"coordinates must be 'natural' or 'log', got {coordinates!r}.")
        if coordinates == "log" and not self.positive:
            raise ValueError(f"{cls}: coordinates='log' needs a model whose states stay positive (positive=True).")
        if not math.isfinite(log_cap):
            raise ValueError(f"log_cap must be finite, got {log_cap!r}.")
        self.theta = theta
        self.batch_shape = theta.shape[:-1]
        self.dim = len(self.states)
        self.constant_values = {k: float(v) for k, v in constants.items()}
        self.inputs = dict(inputs or {})
        self.coordinates = coordinates
        self.log_cap = float(log_cap)

    # ---- what a model writes --------------------------------------------------------------------------
    @abstractmethod
    def rhs(self, t: Tensor, y: Tensor, p: Mapping[str, Tensor | float]) -> Tensor:
        """dy/dt in natural coordinates: y (*batch, D) -> (*batch, D).

        `p` maps every parameter name to a tensor of shape `batch` (theta's columns), every constant to
        a float and every input to its value at t."""

    def rhs_log(self, t: Tensor, x: Tensor, p: Mapping[str, Tensor | float]) -> Tensor:
        """dx/dt for x = log y (default: rhs(t, e^x, p) / e^x); override when the division cancels
        analytically (Lotka-Volterra's per-capita rates)."""
        y = torch.exp(x.clamp(LOG_FLOOR, self.log_cap))
        return self.rhs(t, y, p) / y

    def initial(self, p: Mapping[str, Tensor | float]) -> Tensor | None:
        """z(t0), shape (*batch, D), as a function of parameters and constants; None (default) when the
        recipe gives the initial state."""
        return None

    def jump_times(self) -> list[float]:
        """Times where `rhs` is discontinuous in t besides the inputs' change times (default none);
        may read `self.constant_values`."""
        return []

    def jacobians(self, t: float, y: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Optional analytic fast path for ONE member in the solve coordinates: (f (D,), df/dy (D, D),
        df/dtheta (D, P)) in numpy. None (default): the solvers differentiate `f` with torch."""
        return None

    # ---- what the solvers call ---------------------------------------------------------------------------
    def values(self, t: Tensor, theta: Tensor) -> dict[str, Tensor | float]:
        """The mapping `rhs` reads: parameters (theta's columns), constants, inputs at t."""
        p: dict[str, Tensor | float] = dict(zip(self.parameters, theta.unbind(-1), strict=True))
        p.update(self.constant_values)
        for name, u in self.inputs.items():
            p[name] = u(t)
        return p

    def f(self, t: Tensor, y: Tensor, theta: Tensor) -> Tensor:
        """The field in the solve coordinates with explicit parameters: y (*batch, D), theta (*batch, P)."""
        p = self.values(t, theta)
        return self.rhs_log(t, y, p) if self.coordinates == "log" else self.rhs(t, y, p)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.f(t, y, self.theta)

    def breakpoints(self) -> list[float]:
        """Every time where the field is not smooth in t (the inputs' change times and `jump_times`), sorted."""
        times = {float(b) for u in self.inputs.values() for b in u.breakpoints} | {float(b) for b in self.jump_times()}
        return sorted(times)

    def to_solve(self, z: Tensor) -> Tensor:
        """Natural state -> solve coordinates."""
        return torch.log(z) if self.coordinates == "log" else z

    def from_solve(self, x: Tensor) -> Tensor:
        """Solve coordinates -> natural state."""
        return torch.exp(x.clamp(LOG_FLOOR, self.log_cap)) if self.coordinates == "log" else x
