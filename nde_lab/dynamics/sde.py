"""`SDE`: the interface of every stochastic model dY = f(t, Y) dt + g(t, Y) dW, and `NeuralSDE` from MLPs."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import MultivariateNormal, Normal

from nde_lab.dynamics.mlp import ACTIVATIONS, Activation, MLPVectorField
from nde_lab.solvers.registry import check_choice

__all__ = ["SDE", "NeuralSDE", "NoiseType", "SDEType", "euler_maruyama_log_prob"]

NoiseType = Literal["diagonal", "scalar", "additive", "general"]
SDEType = Literal["ito", "stratonovich"]


class SDE(nn.Module, ABC):
    """dY = f(t, Y) dt + g(t, Y) dW on a state of `state_dim` coordinates, driven by `brownian_dim` channels.

    Subclasses declare `noise_type` ('diagonal': g is (B, D), one channel per coordinate; 'scalar':
    g is (B, D, 1); 'additive': g is (B, D, m) and independent of Y; 'general': g is (B, D, m)) and
    `sde_type` ('ito' or 'stratonovich'), and implement the drift `f` and diffusion `g`. The solver
    seam (`nde_lab.solvers.sde.solve_sde`) validates methods against these declarations.
    """

    noise_type: str = "diagonal"
    sde_type: str = "ito"
    #: True when f and g do not depend on t (transitions can then be evaluated all at once).
    time_homogeneous: bool = False
    state_dim: int

    @property
    def brownian_dim(self) -> int:
        """Number of Brownian channels m (D for diagonal noise, 1 for scalar noise)."""
        return self.state_dim

    @abstractmethod
    def f(self, t: Tensor, y: Tensor) -> Tensor:
        """Drift at time `t` (scalar tensor) and state `y` (B, D); returns (B, D), in state units per time unit."""

    @abstractmethod
    def g(self, t: Tensor, y: Tensor) -> Tensor:
        """Diffusion at `t`, `y` (B, D); returns (B, D) for diagonal noise, else (B, D, m)."""

    def transition_log_prob(self, t0: Tensor, y0: Tensor, dt: Tensor, y1: Tensor) -> Tensor:
        """log p(y1 | y0) over one step, shape (B,): the Euler-Maruyama Gaussian density by default.

        Args:
            t0: start time of the step, scalar tensor.
            y0, y1: states at the start and end of the step, shape (B, D).
            dt: step length (time units), scalar tensor or shape (B,), positive.

        Subclasses with an exact transition density (OU, GBM) override this.
        """
        return euler_maruyama_log_prob(self, t0, y0, dt, y1)


def euler_maruyama_log_prob(sde: SDE, t0: Tensor, y0: Tensor, dt: Tensor, y1: Tensor) -> Tensor:
    """Gaussian log-density of y1 ~ N(y0 + f dt, g g^T dt) for Ito SDEs, shape (B,)."""
    if sde.sde_type != "ito":
        raise TypeError(
            f"the Euler-Maruyama transition density needs an Ito SDE; {type(sde).__name__} is "
            f"{sde.sde_type!r}: convert the drift to Ito form or override transition_log_prob."
        )
    dt = torch.as_tensor(dt, dtype=y0.dtype).expand(y0.shape[0])
    drift, diff = sde.f(t0, y0), sde.g(t0, y0)
    mean = y0 + drift * dt[:, None]
    if sde.noise_type == "diagonal":
        return Normal(mean, diff.abs() * dt[:, None].sqrt()).log_prob(y1).sum(-1)
    cov = diff @ diff.transpose(-1, -2) * dt[:, None, None]
    cov = cov + 1e-10 * torch.eye(cov.shape[-1], dtype=cov.dtype)
    return MultivariateNormal(mean, covariance_matrix=cov).log_prob(y1)


class _DiffusionNet(nn.Module):
    """Per-coordinate diffusion sigma_i(t, y_i) > 0, as in Li et al. (2020): one small MLP per coordinate."""

    def __init__(self, dim: int, width: int, activation: str, floor: float, init_scale: float) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Linear(1, width), act(), nn.Linear(width, 1)) for _ in range(dim)
        )
        self.floor = floor
        # softplus(b) = init_scale at initialisation: start with a moderate, state-independent noise.
        bias = math.log(math.expm1(max(init_scale - floor, 1e-6)))
        for net in self.nets:
            with torch.no_grad():
                net[-1].weight.mul_(0.1)
                net[-1].bias.fill_(bias)

    def forward(self, y: Tensor) -> Tensor:
        out = torch.cat([net(y[:, i : i + 1]) for i, net in enumerate(self.nets)], dim=1)
        return nn.functional.softplus(out) + self.floor


class NeuralSDE(SDE):
    """Ito SDE with diagonal noise: drift an `MLPVectorField`, diffusion per-coordinate MLPs (softplus > 0).

    Args:
        dim: state dimension D.
        width: hidden units of drift and diffusion networks.
        depth: hidden layers of the drift network.
        activation: hidden nonlinearity.
        time_input: feed t to the drift (non-autonomous).
        diffusion_init: diffusion value at initialisation (state units per sqrt(time unit)).
        diffusion_floor: lower bound of the diffusion (keeps transition densities proper).
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(
        self,
        dim: int,
        *,
        width: int = 32,
        depth: int = 2,
        activation: Activation = "tanh",
        time_input: bool = False,
        diffusion_init: float = 0.3,
        diffusion_floor: float = 1e-3,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, ACTIVATIONS, error=ValueError)
        if dim < 1 or width < 1 or depth < 1:
            raise ValueError(f"NeuralSDE needs dim, width, depth >= 1; got {dim}, {width}, {depth}.")
        if not diffusion_init > diffusion_floor >= 0:
            raise ValueError(
                f"NeuralSDE needs diffusion_init > diffusion_floor >= 0, got {diffusion_init} and {diffusion_floor}."
            )
        self.state_dim = dim
        self.drift = MLPVectorField(dim, width=width, depth=depth, activation=activation, time_input=time_input)
        self.diffusion = _DiffusionNet(dim, width, activation, diffusion_floor, diffusion_init)

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        return self.drift(t, y)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return self.diffusion(y)
