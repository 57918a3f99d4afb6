"""`LatentSDEModel`: the latent SDE of Li et al. (2020): encoder, posterior and prior SDEs, decoder, path-space KL."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

from nde_lab.dynamics.sde import SDE

__all__ = ["LatentSDEModel"]


def _mlp(n_in: int, n_out: int, width: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, width), nn.Softplus(), nn.Linear(width, width), nn.Softplus(), nn.Linear(width, n_out))


class _Encoder(nn.Module):
    """GRU run backwards in time: context at observation k summarises observations k, k+1, ..."""

    def __init__(self, data_dim: int, hidden: int, context_dim: int) -> None:
        super().__init__()
        self.gru = nn.GRU(data_dim, hidden)
        self.out = nn.Linear(hidden, context_dim)

    def forward(self, y: Tensor) -> Tensor:
        """y (T, B, D) -> context (T, B, C)."""
        h, _ = self.gru(torch.flip(y, dims=(0,)))
        return torch.flip(self.out(h), dims=(0,))


class _Augmented(SDE):
    """Posterior SDE with the KL integrand 0.5 |(f - h) / g|^2 as one extra coordinate (diagonal, Ito)."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, model: LatentSDEModel, ts: Tensor, ctx: Tensor) -> None:
        super().__init__()
        self.model, self.ts, self.ctx = model, ts, ctx
        self.state_dim = model.latent_dim + 1

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        z = y[:, :-1]
        f, h, g = self.model.posterior_drift(t, z, self.ts, self.ctx), self.model.prior_drift(z), self.model.diffusion(z)
        u = (f - h) / g
        return torch.cat([f, 0.5 * (u**2).sum(1, keepdim=True)], dim=1)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        z = y[:, :-1]
        return torch.cat([self.model.diffusion(z), torch.zeros_like(y[:, -1:])], dim=1)


class _Prior(SDE):
    """The prior SDE dz = h(z) dt + g(z) dW (the generative model)."""

    noise_type = "diagonal"
    sde_type = "ito"
    time_homogeneous = True

    def __init__(self, model: LatentSDEModel) -> None:
        super().__init__()
        self.model = model
        self.state_dim = model.latent_dim

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        return self.model.prior_drift(y)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return self.model.diffusion(y)


class LatentSDEModel(nn.Module):
    """Latent SDE (Li, Wong, Chen & Duvenaud 2020, "Scalable Gradients for Stochastic Differential Equations").

    Observations y(t_k) in R^D at irregular times are modelled as y = decoder(z(t)) + noise, where the
    latent z in R^L follows the prior SDE dz = h(z) dt + g(z) dW from z0 ~ p(z0). The approximate
    posterior replaces the drift with f(t, z, context) (context from a backwards GRU over the
    observations) and z0 ~ q(z0 | context at t_0). The path-space KL between posterior and prior is
    E int 0.5 |(f - h) / g|^2 dt (Girsanov), shared diffusion g: one small MLP per latent coordinate,
    sigmoid-bounded so the KL stays finite.

    Args:
        data_dim: D.
        latent_dim: L.
        context_dim: size of the encoder's context.
        hidden: hidden units of every network.
        obs_std_init: initial observation-noise standard deviation (standardised units).
    """

    def __init__(self, data_dim: int, *, latent_dim: int = 4, context_dim: int = 16, hidden: int = 32,
                 obs_std_init: float = 0.1) -> None:
        super().__init__()
        if min(data_dim, latent_dim, context_dim, hidden) < 1 or not obs_std_init > 0:
            raise ValueError(
                f"LatentSDEModel needs positive sizes and obs_std_init; got data_dim={data_dim}, latent_dim={latent_dim}, "
                f"context_dim={context_dim}, hidden={hidden}, obs_std_init={obs_std_init}."
            )
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.encoder = _Encoder(data_dim, hidden, context_dim)
        self.qz0_net = nn.Linear(context_dim, 2 * latent_dim)
        self.f_net = _mlp(latent_dim + context_dim, latent_dim, hidden)
        self.h_net = _mlp(latent_dim, latent_dim, hidden)
        self.g_nets = nn.ModuleList(
            nn.Sequential(nn.Linear(1, hidden), nn.Softplus(), nn.Linear(hidden, 1), nn.Sigmoid()) for _ in range(latent_dim)
        )
        self.decoder = nn.Linear(latent_dim, data_dim)
        self.pz0_mean = nn.Parameter(torch.zeros(latent_dim))
        self.pz0_logstd = nn.Parameter(torch.zeros(latent_dim))
        self.obs_logstd = nn.Parameter(torch.full((data_dim,), math.log(obs_std_init)))

    # ---- the three fields ----------------------------------------------------------------------------
    def posterior_drift(self, t: Tensor, z: Tensor, ts: Tensor, ctx: Tensor) -> Tensor:
        i = min(int(torch.searchsorted(ts, t.reshape(1).to(ts), right=True)), len(ts)) - 1
        return self.f_net(torch.cat([z, ctx[max(i, 0)]], dim=1))

    def prior_drift(self, z: Tensor) -> Tensor:
        return self.h_net(z)

    def diffusion(self, z: Tensor) -> Tensor:
        return torch.cat([net(z[:, i : i + 1]) for i, net in enumerate(self.g_nets)], dim=1)

    def obs_std(self) -> Tensor:
        return self.obs_logstd.exp() + 1e-3

    def prior_sde(self) -> SDE:
        return _Prior(self)

    def prior_z0(self) -> Normal:
        return Normal(self.pz0_mean, self.pz0_logstd.exp())

    # ---- inference ---------------------------------------------------------------------------------
    def encode(self, t_obs: Tensor, y_obs: Tensor) -> tuple[Tensor, Normal]:
        """Context (T, B, C) and q(z0) from observations y_obs (B, T, D) at times t_obs (T,)."""
        ctx = self.encoder(y_obs.transpose(0, 1))
        mean, logstd = self.qz0_net(ctx[0]).chunk(2, dim=1)
        return ctx, Normal(mean, logstd.exp())

    def posterior_sde(self, t_obs: Tensor, ctx: Tensor) -> SDE:
        """The posterior SDE augmented with the KL integrand (state L + 1)."""
        return _Augmented(self, t_obs, ctx)

    def kl_z0(self, qz0: Normal) -> Tensor:
        """KL(q(z0) || p(z0)) per path, shape (B,)."""
        return kl_divergence(qz0, self.prior_z0()).sum(-1)

    def log_lik(self, z: Tensor, y: Tensor) -> Tensor:
        """log p(y | z) summed over the given times and state: z (T, B, L), y (B, T, D) -> (B,)."""
        return Normal(self.decoder(z), self.obs_std()).log_prob(y.transpose(0, 1)).sum((0, 2))
