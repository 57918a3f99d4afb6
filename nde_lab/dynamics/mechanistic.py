"""Mechanistic vector fields whose parameters may carry a batch dimension over posterior draws."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from nde_lab.dynamics.base import VectorField

__all__ = ["LogisticGrowth", "LotkaVolterra"]


class LotkaVolterra(VectorField):
    """Lotka-Volterra predator-prey dynamics, u = prey, v = predator:

        du/dt = (alpha - beta v) u,    dv/dt = (-gamma + delta u) v.

    The parameters are plain tensors (not `nn.Parameter`s), each of shape `batch` (for instance
    `(n_draws,)`, or `()` for one parameter set); the state has shape (*batch, 2), so one solve covers
    every parameter set at once.

    Args:
        alpha, beta, gamma, delta: rates (1/time), tensors or floats of a common broadcastable shape.
        coordinates: "natural" evolves (u, v); "log" evolves (log u, log v) by
            d log u/dt = alpha - beta v, d log v/dt = -gamma + delta u -- the same ODE for positive
            populations, which stays positive under any step size. In log coordinates the exponent is
            capped at `log_cap` so that a far-out parameter set (during warm-up or from a wide guide)
            gives a finite, hopeless trajectory rather than an overflow; the cap (e^30 by default) is
            never reached by a trajectory with non-negligible posterior mass.
    """

    dim = 2

    def __init__(
        self,
        alpha: Tensor | float,
        beta: Tensor | float,
        gamma: Tensor | float,
        delta: Tensor | float,
        *,
        coordinates: Literal["natural", "log"] = "natural",
        log_cap: float = 30.0,
    ) -> None:
        super().__init__()
        if coordinates not in ("natural", "log"):
            raise ValueError(f"coordinates must be 'natural' or 'log', got {coordinates!r}.")
        params = [torch.as_tensor(p, dtype=torch.get_default_dtype()) if not isinstance(p, Tensor) else p
                  for p in (alpha, beta, gamma, delta)]
        try:
            self.batch_shape = torch.broadcast_shapes(*(p.shape for p in params))
        except RuntimeError as err:
            shapes = [tuple(p.shape) for p in params]
            raise ValueError(f"alpha, beta, gamma, delta must have broadcastable shapes, got {shapes}.") from err
        self.alpha, self.beta, self.gamma, self.delta = params
        self.coordinates = coordinates
        self.log_cap = float(log_cap)
        if not math.isfinite(self.log_cap):
            raise ValueError(f"log_cap must be finite, got {log_cap!r}.")

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """f(t, y) for y of shape (*batch, 2): returns shape (*batch, 2)."""
        a, b, c, d = self.alpha, self.beta, self.gamma, self.delta
        if self.coordinates == "log":
            u = torch.exp(torch.clamp(y[..., 0], max=self.log_cap))
            v = torch.exp(torch.clamp(y[..., 1], max=self.log_cap))
            return torch.stack([a - b * v, -c + d * u], dim=-1)
        u, v = y[..., 0], y[..., 1]
        return torch.stack([(a - b * v) * u, (-c + d * u) * v], dim=-1)


class LogisticGrowth(VectorField):
    """Logistic (Verhulst) growth of one population y with rate r and carrying capacity K:

        dy/dt = r y (1 - y / K),    closed form y(t) = K / (1 + (K / y0 - 1) exp(-r t)).

    Observed only while y << K, the growth is exponential and K is bounded from below only: the
    textbook weakly identified mechanistic model (the heavy-tailed test model of docs/inference.md).

    Args:
        r, K: rate (1/time) and carrying capacity (units of y), tensors or floats of a common
            broadcastable shape `batch`; the state has shape (*batch, 1).
        coordinates: "natural" evolves y; "log" evolves log y by d log y/dt = r (1 - y / K), which stays
            positive under any step (the exponent is capped at `log_cap`, as in `LotkaVolterra`).
    """

    dim = 1

    def __init__(self, r: Tensor | float, K: Tensor | float, *,
                 coordinates: Literal["natural", "log"] = "natural", log_cap: float = 30.0) -> None:
        super().__init__()
        if coordinates not in ("natural", "log"):
            raise ValueError(f"coordinates must be 'natural' or 'log', got {coordinates!r}.")
        params = [torch.as_tensor(p, dtype=torch.get_default_dtype()) if not isinstance(p, Tensor) else p for p in (r, K)]
        try:
            self.batch_shape = torch.broadcast_shapes(*(p.shape for p in params))
        except RuntimeError as err:
            raise ValueError(f"r and K must have broadcastable shapes, got {[tuple(p.shape) for p in params]}.") from err
        self.r, self.K = params
        self.coordinates = coordinates
        self.log_cap = float(log_cap)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """f(t, y) for y of shape (*batch, 1): returns shape (*batch, 1)."""
        r, k = self.r.unsqueeze(-1), self.K.unsqueeze(-1)
        if self.coordinates == "log":
            return r * (1.0 - torch.exp(torch.clamp(y, max=self.log_cap)) / k)
        return r * y * (1.0 - y / k)
