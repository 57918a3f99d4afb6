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


def _time_scale(ts: Tensor) -> float:
    """Mean spacing of the observation times (the unit of the time features), 1 for a single time."""
    return float(ts[-1] - ts[0]) / (len(ts) - 1) if len(ts) > 1 else 1.0


class _Encoder(nn.Module):
    """GRU run backwards in time over (y_k, gap to the next observation): context k summarises observations k, k+1, ..."""

    def __init__(self, data_dim: int, hidden: int, context_dim: int) -> None:
        super().__init__()
        self.gru = nn.GRU(data_dim + 1, hidden)
        self.out = nn.Linear(hidden, context_dim)

    def forward(self, ts: Tensor, y: Tensor) -> Tensor:
        """ts (T,) and y (T, B, D) -> context (T, B, C + 2 D): the GRU's summary, y_k and y_{k+1} (0 after the last)."""
        gaps = torch.cat([torch.diff(ts), ts.new_zeros(1)]) / _time_scale(ts)
        inp = torch.cat([y, gaps.to(y)[:, None, None].expand(-1, y.shape[1], 1)], dim=2)
        h, _ = self.gru(torch.flip(inp, dims=(0,)))
        nxt = torch.cat([y[1:], torch.zeros_like(y[:1])])  # skip connection: observations k and k + 1 verbatim
        return torch.cat([torch.flip(self.out(h), dims=(0,)), y, nxt], dim=2)


class _DiagonalDiffusion(nn.Module):
    """L independent one-input MLPs g_i(z_i) = sigmoid(w2_i . softplus(w1_i z_i + b1_i) + b2_i), evaluated at once.

    Each coordinate's diffusion depends on that coordinate only (diagonal noise), bounded in (0, 1)
    so that the path-space KL with its 1/g^2 stays finite. Same function class and initialisation as one
    `nn.Sequential(Linear(1, H), Softplus, Linear(H, 1), Sigmoid)` per coordinate, without the Python loop.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(hidden)
        self.w1 = nn.Parameter(torch.empty(dim, hidden).uniform_(-1.0, 1.0))
        self.b1 = nn.Parameter(torch.empty(dim, hidden).uniform_(-1.0, 1.0))
        self.w2 = nn.Parameter(torch.empty(dim, hidden).uniform_(-bound, bound))
        self.b2 = nn.Parameter(torch.empty(dim).uniform_(-bound, bound))

    def forward(self, z: Tensor) -> Tensor:
        """z (B, L) -> g (B, L)."""
        h = nn.functional.softplus(z[..., None] * self.w1 + self.b1)
        return torch.sigmoid((h * self.w2).sum(-1) + self.b2)


class _Augmented(SDE):
    """Posterior SDE with the KL integrand 0.5 |(f - h) / g|^2 (summed over latent coordinates) as one extra coordinate.

    The extra coordinate has drift 0.5 |u|^2 and no diffusion, so the solver integrates int 0.5 |u|^2 dt with the
    same step as the latent path (torchsde's `logqp` augmentation). Diagonal noise, Ito.
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, model: LatentSDEModel, ts: Tensor, ctx: Tensor) -> None:
        super().__init__()
        self.model, self.ts, self.ctx = model, ts, ctx
        self.state_dim = model.latent_dim + 1
        self._cache: tuple[Tensor, Tensor] | None = None

    def _diffusion(self, y: Tensor) -> Tensor:
        # torchsde evaluates f(t, y) and g(t, y) on the same tensor within a step: compute g once.
        if self._cache is not None and self._cache[0] is y:
            return self._cache[1]
        g = self.model.diffusion(y[:, :-1])
        self._cache = (y, g)
        return g

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        z = y[:, :-1]
        f, h, g = self.model.posterior_drift(t, z, self.ts, self.ctx), self.model.prior_drift(z), self._diffusion(y)
        u = (f - h) / g
        return torch.cat([f, 0.5 * (u**2).sum(1, keepdim=True)], dim=1)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return torch.cat([self._diffusion(y), torch.zeros_like(y[:, -1:])], dim=1)


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
    posterior replaces the drift with f(t, z, context) and z0 ~ q(z0 | context at t_0). The context
    comes from a GRU run backwards over (y_k, t_{k+1} - t_k), so on irregular times it knows the gaps;
    between observations t_k <= t < t_{k+1} the posterior drift sees context k and the time since t_k
    and until t_{k+1} (in units of the mean spacing), which lets it steer towards the next
    observation. The path-space KL between posterior and prior is E int 0.5 |(f - h) / g|^2 dt
    (Girsanov) with the diffusion g shared: one small MLP per latent coordinate, sigmoid-bounded so
    the KL stays finite.

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
        self.qz0_net = nn.Linear(context_dim + 2 * data_dim, 2 * latent_dim)
        self.f_net = _mlp(latent_dim + context_dim + 2 * data_dim + 2, latent_dim, hidden)
        self.h_net = _mlp(latent_dim, latent_dim, hidden)
        self.g_net = _DiagonalDiffusion(latent_dim, hidden)
        self.decoder = nn.Linear(latent_dim, data_dim)
        self.pz0_mean = nn.Parameter(torch.zeros(latent_dim))
        self.pz0_logstd = nn.Parameter(torch.zeros(latent_dim))
        self.obs_logstd = nn.Parameter(torch.full((data_dim,), math.log(obs_std_init)))

    # ---- the three fields ----------------------------------------------------------------------------
    def posterior_drift(self, t: Tensor, z: Tensor, ts: Tensor, ctx: Tensor) -> Tensor:
        """f(t, z, context) on t_k <= t < t_{k+1}: z (B, L) at time t, observation times ts (T,), context (T, B, C) -> (B, L).

        Inputs: z, context k, and the time since t_k and until t_{k+1} (0 after the last observation) in
        units of the mean spacing.
        """
        n = len(ts)
        i = max(min(int(torch.searchsorted(ts, t.reshape(1).to(ts), right=True)), n) - 1, 0)
        scale, tf = _time_scale(ts), float(t)
        since = (tf - float(ts[i])) / scale
        until = max(float(ts[i + 1]) - tf, 0.0) / scale if i + 1 < n else 0.0
        times = z.new_tensor([since, until]).expand(z.shape[0], 2)
        return self.f_net(torch.cat([z, ctx[i], times], dim=1))

    def prior_drift(self, z: Tensor) -> Tensor:
        return self.h_net(z)

    def diffusion(self, z: Tensor) -> Tensor:
        return self.g_net(z)

    def obs_std(self) -> Tensor:
        return self.obs_logstd.exp() + 1e-3

    def prior_sde(self) -> SDE:
        return _Prior(self)

    def prior_z0(self) -> Normal:
        return Normal(self.pz0_mean, self.pz0_logstd.exp())

    # ---- inference ---------------------------------------------------------------------------------
    def encode(self, t_obs: Tensor, y_obs: Tensor) -> tuple[Tensor, Normal]:
        """Context (T, B, C) and q(z0) from observations y_obs (B, T, D) at times t_obs (T,)."""
        ctx = self.encoder(t_obs, y_obs.transpose(0, 1))
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
