"""The classic mechanistic models as built-in `MechanisticField`s, each with its analytic Jacobians.

| class | states | parameters | constants | inputs read |
|---|---|---|---|---|
| `LotkaVolterra` | prey u, predator v | alpha, beta, gamma, delta | | |
| `LogisticGrowth` | y | r, K | | |
| `SIR` | S, I, R | beta, gamma | N | |
| `SEIR` | S, E, I, R | beta, sigma, gamma | N | |
| `DampedOscillator` | x, v | omega, zeta | | force (optional) |

Rates are per unit of the series' time; populations in the data's units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from nde_lab.dynamics.mechanistic import Input, MechanisticField

__all__ = ["SEIR", "SIR", "DampedOscillator", "LogisticGrowth", "LotkaVolterra"]


def _theta(rates: tuple[Tensor | float, ...], names: tuple[str, ...]) -> Tensor:
    """One theta (*batch, P) from a single theta or from one tensor/float per parameter."""
    if len(rates) == 1 and isinstance(rates[0], Tensor) and len(names) > 1:
        return rates[0]
    if len(rates) != len(names):
        raise ValueError(f"give theta (*batch, {len(names)}) or the {len(names)} parameters {list(names)}, got {len(rates)} values.")
    values = [torch.as_tensor(p, dtype=torch.get_default_dtype()) if not isinstance(p, Tensor) else p for p in rates]
    try:
        shape = torch.broadcast_shapes(*(p.shape for p in values))
    except RuntimeError as err:
        raise ValueError(f"{', '.join(names)} must have broadcastable shapes, got {[tuple(p.shape) for p in values]}.") from err
    return torch.stack([p.expand(shape) for p in values], dim=-1)


class _Classic(MechanisticField):
    """Constructor shared by the built-ins: theta (*batch, P), or the parameters one by one (by position or name)."""

    def __init__(self, *rates: Tensor | float, constants: Mapping[str, float] | None = None,
                 inputs: Mapping[str, Input] | None = None, coordinates: Literal["natural", "log"] = "natural",
                 log_cap: float = 30.0, **named: Tensor | float) -> None:
        if named:
            unknown = sorted(set(named) - set(self.parameters))
            if rates or unknown or len(named) != len(self.parameters):
                raise ValueError(f"{type(self).__name__} takes parameters {list(self.parameters)} (all, by position or "
                                 f"by name) or one theta; got {len(rates)} positional and {sorted(named)}.")
            rates = tuple(named[n] for n in self.parameters)
        super().__init__(_theta(rates, self.parameters), constants=constants, inputs=inputs,
                         coordinates=coordinates, log_cap=log_cap)

    def __getattr__(self, name: str):  # alpha, beta... as views of theta's columns
        params = type(self).parameters
        if name in params:
            return self.theta[..., params.index(name)]
        return super().__getattr__(name)


class LotkaVolterra(_Classic):
    """Predator-prey: du/dt = (alpha - beta v) u, dv/dt = (-gamma + delta u) v (u prey, v predator)."""

    states = ("prey", "predator")
    parameters = ("alpha", "beta", "gamma", "delta")
    positive = True

    def rhs(self, t, y, p):
        u, v = y[..., 0], y[..., 1]
        return torch.stack([(p["alpha"] - p["beta"] * v) * u, (-p["gamma"] + p["delta"] * u) * v], dim=-1)

    def rhs_log(self, t, x, p):
        # per-capita rates: the division by the population cancels exactly
        u = torch.exp(torch.clamp(x[..., 0], max=self.log_cap))
        v = torch.exp(torch.clamp(x[..., 1], max=self.log_cap))
        return torch.stack([p["alpha"] - p["beta"] * v, -p["gamma"] + p["delta"] * u], dim=-1)

    def jacobians(self, t, y, theta):
        a, b, c, d = theta
        if self.coordinates == "log":
            u, v = np.exp(np.minimum(y, self.log_cap))
            f = np.array([a - b * v, -c + d * u])
            jy = np.array([[0.0, -b * v], [d * u, 0.0]])
            jp = np.array([[1.0, -v, 0.0, 0.0], [0.0, 0.0, -1.0, u]])
            return f, jy, jp
        u, v = y
        f = np.array([(a - b * v) * u, (-c + d * u) * v])
        jy = np.array([[a - b * v, -b * u], [d * v, -c + d * u]])
        jp = np.array([[u, -u * v, 0.0, 0.0], [0.0, 0.0, -v, u * v]])
        return f, jy, jp

    def sensitivity_rhs(self, theta: np.ndarray) -> Callable[[float, np.ndarray], list[float]]:
        """The forward-sensitivity system in pure Python (the scipy solvers' fast path): (t, x) -> dx/dt for
        x = [y (2), S (2, 6) row-major], S = dy/d(y0[0], y0[1], alpha, beta, gamma, delta)."""
        a, b, c, d = (float(v) for v in theta)
        cap, exp = self.log_cap, math.exp
        if self.coordinates == "log":
            def rhs_log(t: float, x: np.ndarray) -> list[float]:
                lu, lv, s00, s01, s02, s03, s04, s05, s10, s11, s12, s13, s14, s15 = x.tolist()
                u, v = exp(min(lu, cap)), exp(min(lv, cap))
                bv, du = b * v, d * u  # J = [[0, -b v], [d u, 0]]; J_theta = [[1, -v, 0, 0], [0, 0, -1, u]]
                return [a - bv, -c + du,
                        -bv * s10, -bv * s11, 1.0 - bv * s12, -v - bv * s13, -bv * s14, -bv * s15,
                        du * s00, du * s01, du * s02, du * s03, du * s04 - 1.0, du * s05 + u]
            return rhs_log

        def rhs(t: float, x: np.ndarray) -> list[float]:
            u, v, *s = x.tolist()
            j00, j01, j10, j11 = a - b * v, -b * u, d * v, -c + d * u
            row0 = [j00 * s0 + j01 * s1 for s0, s1 in zip(s[:6], s[6:], strict=True)]
            row1 = [j10 * s0 + j11 * s1 for s0, s1 in zip(s[:6], s[6:], strict=True)]
            row0[2] += u
            row0[3] -= u * v
            row1[4] -= v
            row1[5] += u * v
            return [j00 * u, j11 * v, *row0, *row1]
        return rhs


class LogisticGrowth(_Classic):
    """Verhulst growth dy/dt = r y (1 - y / K); closed form y(t) = K / (1 + (K / y0 - 1) e^{-r t}).
    Observed only while y << K, K is bounded from below only (the heavy-tailed test model)."""

    states = ("y",)
    parameters = ("r", "K")
    positive = True

    def rhs(self, t, y, p):
        return p["r"].unsqueeze(-1) * y * (1.0 - y / p["K"].unsqueeze(-1))

    def rhs_log(self, t, x, p):
        return p["r"].unsqueeze(-1) * (1.0 - torch.exp(torch.clamp(x, max=self.log_cap)) / p["K"].unsqueeze(-1))

    def jacobians(self, t, y, theta):
        r, k = theta
        if self.coordinates == "log":
            z = float(np.exp(min(y[0], self.log_cap)))
            return np.array([r * (1 - z / k)]), np.array([[-r * z / k]]), np.array([[1 - z / k, r * z / k**2]])
        z = float(y[0])
        return (np.array([r * z * (1 - z / k)]), np.array([[r * (1 - 2 * z / k)]]),
                np.array([[z * (1 - z / k), r * z**2 / k**2]]))


class SIR(_Classic):
    """Kermack-McKendrick: dS/dt = -beta S I / N, dI/dt = beta S I / N - gamma I, dR/dt = gamma I
    (beta contacts per time, 1/gamma the infectious period, N the population, a constant)."""

    states = ("S", "I", "R")
    parameters = ("beta", "gamma")
    constants = ("N",)

    def rhs(self, t, y, p):
        s, i = y[..., 0], y[..., 1]
        infection = p["beta"] * s * i / p["N"]
        recovery = p["gamma"] * i
        return torch.stack([-infection, infection - recovery, recovery], dim=-1)

    def jacobians(self, t, y, theta):
        beta, gamma = theta
        n = self.constant_values["N"]
        s, i, _ = y
        inf = beta * s * i / n
        f = np.array([-inf, inf - gamma * i, gamma * i])
        jy = np.array([[-beta * i / n, -beta * s / n, 0.0],
                       [beta * i / n, beta * s / n - gamma, 0.0],
                       [0.0, gamma, 0.0]])
        jp = np.array([[-s * i / n, 0.0], [s * i / n, -i], [0.0, i]])
        return f, jy, jp


class SEIR(_Classic):
    """SIR with a latent class: dS = -beta S I / N, dE = beta S I / N - sigma E, dI = sigma E - gamma I,
    dR = gamma I (1/sigma the incubation period)."""

    states = ("S", "E", "I", "R")
    parameters = ("beta", "sigma", "gamma")
    constants = ("N",)

    def rhs(self, t, y, p):
        s, e, i = y[..., 0], y[..., 1], y[..., 2]
        infection = p["beta"] * s * i / p["N"]
        onset, recovery = p["sigma"] * e, p["gamma"] * i
        return torch.stack([-infection, infection - onset, onset - recovery, recovery], dim=-1)

    def jacobians(self, t, y, theta):
        beta, sigma, gamma = theta
        n = self.constant_values["N"]
        s, e, i, _ = y
        inf = beta * s * i / n
        f = np.array([-inf, inf - sigma * e, sigma * e - gamma * i, gamma * i])
        jy = np.array([[-beta * i / n, 0.0, -beta * s / n, 0.0],
                       [beta * i / n, -sigma, beta * s / n, 0.0],
                       [0.0, sigma, -gamma, 0.0],
                       [0.0, 0.0, gamma, 0.0]])
        jp = np.array([[-s * i / n, 0.0, 0.0], [s * i / n, -e, 0.0], [0.0, e, -i], [0.0, 0.0, i]])
        return f, jy, jp


class DampedOscillator(_Classic):
    """x'' + 2 zeta omega x' + omega^2 x = force(t): dx/dt = v, dv/dt = -2 zeta omega v - omega^2 x + force
    (omega the natural angular frequency, zeta the damping ratio; `force` an optional input, else 0)."""

    states = ("x", "v")
    parameters = ("omega", "zeta")

    def rhs(self, t, y, p):
        x, v = y[..., 0], y[..., 1]
        w, z = p["omega"], p["zeta"]
        force = p.get("force", 0.0)
        return torch.stack([v.expand(torch.broadcast_shapes(v.shape, w.shape)),
                            -2.0 * z * w * v - w * w * x + force], dim=-1)

    def jacobians(self, t, y, theta):
        if self.inputs:
            return None  # the input's value at t comes from torch
        w, z = theta
        x, v = y
        f = np.array([v, -2 * z * w * v - w * w * x])
        jy = np.array([[0.0, 1.0], [-w * w, -2 * z * w]])
        jp = np.array([[0.0, 0.0], [-2 * z * v - 2 * w * x, -2 * w * v]])
        return f, jy, jp
