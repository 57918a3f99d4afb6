"""Mechanistic SDEs with named, optionally positive parameters: `ParametricSDE`, `OrnsteinUhlenbeck`, `GeometricBrownianMotion`."""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Normal

from nde_lab.dynamics.sde import SDE, euler_maruyama_log_prob

__all__ = ["GeometricBrownianMotion", "OrnsteinUhlenbeck", "ParametricSDE"]


class ParametricSDE(SDE):
    """An SDE whose drift and diffusion are small formulas in named parameters.

    A user writes a subclass with `drift(t, y, p)` and `diffusion(t, y, p)`, where `p` maps each
    parameter name to its (constrained) value, a tensor of shape (D,) broadcasting against y (B, D):

        class Logistic(ParametricSDE):
            noise_type = "diagonal"
            def __init__(self, r: float = 1.0, k: float = 1.0, sigma: float = 0.1):
                super().__init__(params={"r": r, "k": k, "sigma": sigma}, positive=("r", "k", "sigma"))
            def drift(self, t, y, p):
                return p["r"] * y * (1 - y / p["k"])
            def diffusion(self, t, y, p):
                return p["sigma"] * y

    Positive parameters are stored as logs (value = exp(raw)), so gradient steps keep them > 0.
    `transition_log_prob(..., params=p)` and `f`/`g` accept explicit parameter values, which the
    fitting task uses to compute the observed Fisher information with respect to the values.

    Args:
        params: name -> initial value (float, or list of D floats).
        positive: names constrained to be positive.
        state_dim: D (a float value is broadcast to D coordinates).
        learnable: names to fit (default all); the others are fixed buffers.
    """

    def __init__(
        self,
        *,
        params: Mapping[str, float | Sequence[float]],
        positive: Sequence[str] = (),
        state_dim: int = 1,
        learnable: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if state_dim < 1:
            raise ValueError(f"{type(self).__name__}: state_dim must be >= 1, got {state_dim}.")
        unknown = [n for n in (*positive, *(learnable or ())) if n not in params]
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown parameter names {unknown}; parameters are {list(params)}.")
        self.state_dim = state_dim
        self.names = list(params)
        self.positive = tuple(positive)
        learnable = self.names if learnable is None else list(learnable)
        self.raw = nn.ParameterDict()
        for name, value in params.items():
            v = torch.as_tensor(value, dtype=torch.get_default_dtype()).reshape(-1)
            v = v.expand(state_dim).clone() if v.numel() == 1 else v
            if v.numel() != state_dim:
                raise ValueError(f"{type(self).__name__}: parameter {name!r} has {v.numel()} values, expected 1 or {state_dim}.")
            if name in self.positive:
                if not bool((v > 0).all()):
                    raise ValueError(f"{type(self).__name__}: parameter {name!r} must be positive, got {v.tolist()}.")
                v = v.log()
            if name in learnable:
                self.raw[name] = nn.Parameter(v)
            else:
                self.register_buffer(f"fixed_{name}", v)

    def constrained(self) -> dict[str, Tensor]:
        """Current parameter values (positive ones exponentiated), each of shape (D,)."""
        out = {}
        for name in self.names:
            raw = self.raw[name] if name in self.raw else getattr(self, f"fixed_{name}")
            out[name] = raw.exp() if name in self.positive else raw
        return out

    def learnable_names(self) -> list[str]:
        return [n for n in self.names if n in self.raw]

    @abstractmethod
    def drift(self, t: Tensor, y: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        """Drift (B, D) from time `t`, state `y` (B, D) and parameter values `p`."""

    @abstractmethod
    def diffusion(self, t: Tensor, y: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        """Diffusion from `t`, `y` (B, D) and `p`: (B, D) for diagonal noise, else (B, D, m)."""

    def f(self, t: Tensor, y: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        return self.drift(t, y, self.constrained() if params is None else params)

    def g(self, t: Tensor, y: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        return self.diffusion(t, y, self.constrained() if params is None else params)

    def transition_log_prob(
        self, t0: Tensor, y0: Tensor, dt: Tensor, y1: Tensor, params: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        """log p(y1 | y0) over dt, shape (B,); Euler-Maruyama unless the subclass has an exact density."""
        if params is None:
            return euler_maruyama_log_prob(self, t0, y0, dt, y1)
        return euler_maruyama_log_prob(_Frozen(self, params), t0, y0, dt, y1)

    @property
    def has_exact_transition(self) -> bool:
        """Whether `transition_log_prob` is the exact transition density."""
        return False


def _column(dt: Tensor | float, y0: Tensor) -> Tensor:
    """A step length as a scalar, or (B,) as a column (B, 1), in y0's dtype."""
    dt = torch.as_tensor(dt, dtype=y0.dtype, device=y0.device)
    return dt[:, None] if dt.ndim == 1 else dt


class _Frozen(SDE):
    """A view of a ParametricSDE with given parameter values (for the Euler-Maruyama density)."""

    def __init__(self, sde: ParametricSDE, params: Mapping[str, Tensor]) -> None:
        super().__init__()
        self.base, self.params = sde, params
        self.noise_type, self.sde_type, self.state_dim = sde.noise_type, sde.sde_type, sde.state_dim

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        return self.base.drift(t, y, self.params)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return self.base.diffusion(t, y, self.params)


class OrnsteinUhlenbeck(ParametricSDE):
    """dX = theta (mu - X) dt + sigma dW, independently per coordinate (additive noise).

    Args:
        theta: mean-reversion rate (> 0, per time unit).
        mu: long-run mean (state units).
        sigma: noise scale (> 0, state units per sqrt(time unit)).
        state_dim: D.
        learnable: names to fit (default all three).

    Exact transition: X_{t+dt} | X_t ~ N(mu + (X_t - mu) e^{-theta dt}, sigma^2 (1 - e^{-2 theta dt}) / (2 theta)).
    """

    noise_type = "additive"
    sde_type = "ito"
    time_homogeneous = True

    def __init__(
        self,
        theta: float = 1.0,
        mu: float = 0.0,
        sigma: float = 0.5,
        *,
        state_dim: int = 1,
        learnable: list[str] | None = None,
    ) -> None:
        super().__init__(params={"theta": theta, "mu": mu, "sigma": sigma}, positive=("theta", "sigma"),
                         state_dim=state_dim, learnable=learnable)

    def drift(self, t: Tensor, y: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        return p["theta"] * (p["mu"] - y)

    def diffusion(self, t: Tensor, y: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        return torch.diag_embed(p["sigma"].expand_as(y))

    def transition_log_prob(
        self, t0: Tensor, y0: Tensor, dt: Tensor, y1: Tensor, params: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        p = self.constrained() if params is None else params
        dt = _column(dt, y0)
        decay = torch.exp(-p["theta"] * dt)
        mean = p["mu"] + (y0 - p["mu"]) * decay
        var = p["sigma"] ** 2 * -torch.expm1(-2 * p["theta"] * dt) / (2 * p["theta"])
        return Normal(mean, var.sqrt()).log_prob(y1).sum(-1)

    @property
    def has_exact_transition(self) -> bool:
        return True

    def exact_step(self, y: Tensor, dt: float, z: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        """Draw X_{t+dt} | X_t = y exactly from standard normals z: y, z (B, D) -> (B, D) (`params`: precomputed values)."""
        p = self.constrained() if params is None else params
        decay = torch.exp(-p["theta"] * dt)
        sd = (p["sigma"] ** 2 * -torch.expm1(-2 * p["theta"] * dt) / (2 * p["theta"])).sqrt()
        return p["mu"] + (y - p["mu"]) * decay + sd * z

    def mean_var(self, x0: Tensor | float, t: Tensor) -> tuple[Tensor, Tensor]:
        """Closed-form mean and variance of X_t from X_0 = x0, each of shape (*t.shape, D)."""
        p = self.constrained()
        t = t[..., None]
        mean = x0 * torch.exp(-p["theta"] * t) + p["mu"] * -torch.expm1(-p["theta"] * t)
        var = p["sigma"] ** 2 * -torch.expm1(-2 * p["theta"] * t) / (2 * p["theta"])
        return mean, var


class GeometricBrownianMotion(ParametricSDE):
    """dS = mu S dt + sigma S dW (Ito, diagonal noise), S > 0.

    Args:
        mu: drift rate (per time unit, any sign).
        sigma: volatility (> 0, per sqrt(time unit)).
        state_dim: D (independent coordinates).
        learnable: names to fit (default both).

    Exact solution: S_t = S_0 exp((mu - sigma^2 / 2) t + sigma W_t); log S_{t+dt} | S_t is normal.
    """

    noise_type = "diagonal"
    sde_type = "ito"
    time_homogeneous = True

    def __init__(
        self,
        mu: float = 0.05,
        sigma: float = 0.2,
        *,
        state_dim: int = 1,
        learnable: list[str] | None = None,
    ) -> None:
        super().__init__(params={"mu": mu, "sigma": sigma}, positive=("sigma",), state_dim=state_dim,
                         learnable=learnable)

    def drift(self, t: Tensor, y: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        return p["mu"] * y

    def diffusion(self, t: Tensor, y: Tensor, p: Mapping[str, Tensor]) -> Tensor:
        return p["sigma"] * y

    def transition_log_prob(
        self, t0: Tensor, y0: Tensor, dt: Tensor, y1: Tensor, params: Mapping[str, Tensor] | None = None
    ) -> Tensor:
        p = self.constrained() if params is None else params
        dt = _column(dt, y0)
        if not bool((y0 > 0).all() and (y1 > 0).all()):
            return torch.full(y0.shape[:1], -math.inf, dtype=y0.dtype)
        log_y1 = y1.log()
        mean = y0.log() + (p["mu"] - p["sigma"] ** 2 / 2) * dt
        return (Normal(mean, p["sigma"] * dt.sqrt()).log_prob(log_y1) - log_y1).sum(-1)

    @property
    def has_exact_transition(self) -> bool:
        return True

    def exact_step(self, y: Tensor, dt: float, z: Tensor, params: Mapping[str, Tensor] | None = None) -> Tensor:
        """Draw S_{t+dt} | S_t = y exactly from standard normals z: y, z (B, D) -> (B, D) (`params`: precomputed values)."""
        p = self.constrained() if params is None else params
        return y * torch.exp((p["mu"] - p["sigma"] ** 2 / 2) * dt + p["sigma"] * math.sqrt(dt) * z)

    def exact(self, y0: Tensor, t: Tensor, w: Tensor) -> Tensor:
        """Pathwise solution S_t = S_0 exp((mu - sigma^2/2) t + sigma W_t); t (T,), w (T, B, D) -> (T, B, D)."""
        p = self.constrained()
        return y0 * torch.exp((p["mu"] - p["sigma"] ** 2 / 2) * t[:, None, None] + p["sigma"] * w)
