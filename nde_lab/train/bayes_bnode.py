"""`BayesNeuralODETask`: MAP pre-fit, Laplace start and SVI for a Bayesian neural ODE, with predictive bands."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Literal

import pyro
import torch
import xarray as xr

from nde_lab.errors import NdeLabError, RecipeError
from nde_lab.prob.bnode import NeuralODEProgram
from nde_lab.prob.fast import LaplaceStart, Unconstrained, _fd_hessian, init_guide_at
from nde_lab.prob.inference import GuideName, make_guide
from nde_lab.prob.posterior import QUANTILES
from nde_lab.prob.programs import OBS
from nde_lab.train.bayes import DType, SVITask, _dtype

if TYPE_CHECKING:
    import lightning as L

__all__ = ["BayesNeuralODETask", "map_fit"]


def map_fit(program: NeuralODEProgram, *, steps: int, lr: float, starts: int = 8, seed: int = 0
            ) -> tuple[torch.Tensor, float, list[float]]:
    """Batched multi-start MAP of log p(y, theta) (+ the hidden layers' Normal(0, hidden_prior_scale) prior when only
    the last layer is latent), with a growing time horizon.

    All `starts` starts run in one batched solve per Adam step: start 0 from the network's own weights, the
    others from fresh draws (hidden layers: PyTorch's default Linear init; latent layers: Normal with the
    scale of the network's own); other parameters start at their prior medians (unconstrained space). The
    horizon is the first 4 observations, then linearly more until all are fitted at 60% of the steps,
    which keeps a long oscillating series from settling into a flat fixed-point fit. The best start (full
    log density) wins; its hidden weights are copied into `program.vector_field` and frozen.

    Returns:
        (u_map (P,), log density at u_map including the hidden prior, best loss per step).
    """
    if starts < 1:
        raise RecipeError(f"model.pretrain_starts must be >= 1, got {starts}.")
    pyro.set_rng_seed(seed)
    dtype = torch.get_default_dtype()
    unc = Unconstrained(program)
    linears = [m for m in program.vector_field.net if isinstance(m, torch.nn.Linear)]

    def fresh(p: torch.Tensor, fan_in: int, latent: bool) -> torch.Tensor:
        own = p.detach().to(dtype)
        if latent:
            other = torch.randn(starts - 1, *own.shape, dtype=dtype) * own.std().clamp_min(1e-3)
        else:
            other = (2 * torch.rand(starts - 1, *own.shape, dtype=dtype) - 1) / fan_in**0.5
        return torch.cat([own.unsqueeze(0), other])

    init = {}
    for name in unc.names:
        layer = next((i for i, pair in program.latent_layers.items() if name in pair), None)
        if layer is not None:
            p = linears[layer].weight if name == program.latent_layers[layer][0] else linears[layer].bias
            init[name] = fresh(p, linears[layer].in_features, latent=True)
        else:
            median = program.prior(name).sample((101,)).median(0).values
            init[name] = median.expand(starts, *median.shape)
    u = unc.from_params(init).clone().requires_grad_(True)
    hidden = {i: (fresh(m.weight, m.in_features, False).requires_grad_(True),
                  fresh(m.bias, m.in_features, False).requires_grad_(True))
              for i, m in enumerate(linears) if i not in program.latent_layers}
    opt = torch.optim.Adam([u, *(t for pair in hidden.values() for t in pair)], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1), eta_min=lr * 0.05)
    prior = torch.distributions.Normal(torch.tensor(0.0, dtype=dtype), program.hidden_prior_scale)
    n_times = program.observed.shape[0]

    def log_density(k: int) -> torch.Tensor:
        params, logdet = unc.to_params(u)
        lp = logdet + sum(program.prior(n).log_prob(params[n]) for n in unc.names)
        lp = lp + program.pointwise_log_likelihood(params)[:, :k].sum((-2, -1))
        return lp + sum(prior.log_prob(t).flatten(1).sum(-1) for pair in hidden.values() for t in pair)

    losses = []
    with program.hidden_weights(hidden):
        for step in range(steps):
            opt.zero_grad()
            k = min(n_times, 4 + int((n_times - 4) * step / max(1.0, 0.6 * steps)))
            lp = log_density(k)
            finite = torch.isfinite(lp)
            if not bool(finite.any()):
                raise NdeLabError(f"MAP pre-fit: every start's log density became non-finite at step {step}; "
                                  "lower model.pretrain_lr.")
            (-torch.where(finite, lp, torch.zeros_like(lp)).sum()).backward()
            for t in [u, *(t for pair in hidden.values() for t in pair)]:
                t.grad.nan_to_num_(0.0, 0.0, 0.0)
            opt.step()
            sched.step()
            losses.append(float(-lp.detach()[finite].max()))
        with torch.no_grad():
            final = log_density(n_times)
    final = torch.where(torch.isfinite(final), final, torch.full_like(final, -torch.inf))
    best = int(torch.argmax(final))
    with torch.no_grad():
        for i, (w, b) in hidden.items():
            linears[i].weight.copy_(w[best])
            linears[i].bias.copy_(b[best])
    for p in program.vector_field.parameters():
        p.requires_grad_(False)
    return u.detach()[best], float(final[best]), losses


class BayesNeuralODETask(SVITask):
    """SVI for a `NeuralODEProgram`, started at a MAP fit and its Laplace covariance.

    Stages: (1) `map_fit`: `pretrain_steps` of Adam on log p(y, theta) from `pretrain_starts` starts in one
    batch, with a growing time horizon (+ the hidden layers' penalty when only the last layer is latent; the
    hidden layers then stay at the best start's MAP), (2) a central-difference Hessian of the log
    density at the MAP in one batched solve (2P points) -> Laplace covariance, which initialises the guide,
    (3) SVI (trainer steps) with vectorised particles. Stored extras, in `summary`: `predictive_mean`
    (time, state), `predictive_quantiles` (quantile, time, state) and attr
    `coverage_90` (fraction of observations inside the 90% posterior-predictive band).

    Arguments (beyond SVITask's):
        pretrain_steps, pretrain_lr: Adam steps and learning rate of the MAP pre-fit.
        pretrain_starts: starts of the MAP pre-fit, optimised together in one batch (the best one is kept).
        fd_step: finite-difference step of the Laplace Hessian (unconstrained space).
    """

    model_family = "bayes_neural_ode"

    def __init__(self, program: NeuralODEProgram, *, guide: GuideName = "AutoMultivariateNormal",
                 elbo: Literal["Trace_ELBO", "TraceMeanField_ELBO"] = "Trace_ELBO", num_particles: int = 16,
                 lr: float = 0.005, num_chains: int = 4, num_draws: int = 500, pretrain_steps: int = 500,
                 pretrain_lr: float = 0.02, pretrain_starts: int = 8, fd_step: float = 1e-4, dtype: DType = "float64", seed: int = 0,
                 num_prior_draws: int = 200) -> None:
        if not isinstance(program, NeuralODEProgram):
            raise RecipeError(f"model.program must be a nde_lab.prob.NeuralODEProgram, got {type(program).__name__}.")
        super().__init__(program, guide=guide, elbo=elbo, num_particles=num_particles, lr=lr, num_chains=num_chains,
                         num_draws=num_draws, laplace_init=False, dtype=dtype, seed=seed,
                         num_prior_draws=num_prior_draws)
        if pretrain_steps < 0 or not pretrain_lr > 0 or not fd_step > 0 or pretrain_starts < 1:
            raise RecipeError(f"model.pretrain_steps >= 0, pretrain_lr > 0, fd_step > 0 and pretrain_starts >= 1 are "
                              f"required; got {pretrain_steps}, {pretrain_lr}, {fd_step}, {pretrain_starts}.")
        self.pretrain_steps, self.pretrain_lr, self.fd_step = pretrain_steps, pretrain_lr, fd_step
        self.pretrain_starts = pretrain_starts
        # a submodule, in the task's precision: the (MAP) hidden weights go into the checkpoint and come back
        self.vector_field = program.vector_field.to(getattr(torch, dtype))

    def setup(self, stage: str) -> None:
        first = self._guide is None
        super().setup(stage)  # binds the data and builds the guide at the prior medians
        if not first or self.pretrain_steps == 0:
            return
        with _dtype(self.dtype_name):
            u_map, best, _losses = map_fit(self.program, steps=self.pretrain_steps, lr=self.pretrain_lr,
                                          starts=self.pretrain_starts, seed=self.seed)
            unc = Unconstrained(self.program)
            hess = _fd_hessian(unc, u_map, self.fd_step)
            evals, evecs = torch.linalg.eigh(-0.5 * (hess + hess.T))
            # floor the curvature at 1 (a unit-sd direction in unconstrained space): a direction the MAP left
            # flat or convex would otherwise start the guide with exploding vector fields
            evals = evals.clamp_min(1.0)
            cov = evecs @ torch.diag(1.0 / evals) @ evecs.T
            params, _ = unc.to_params(u_map.unsqueeze(0))
            start = LaplaceStart(u_map=u_map, cov=0.5 * (cov + cov.T), log_density=best,
                                 params={k: v[0] for k, v in params.items()})
            pyro.clear_param_store()
            guide = make_guide(self.guide_name, self.program, init_scale=self.init_scale)
            init_guide_at(guide, start)
            object.__setattr__(self, "_guide", guide)
        self._post_attrs.update(map_log_density=best, pretrain_steps=self.pretrain_steps)
        print(f"nde-lab: MAP pre-fit ({self.pretrain_starts} starts, {self.pretrain_steps} steps): best log density "
              f"{best:.2f} (with the hidden layers' prior)", file=sys.stderr)

    def run_outputs(self, datamodule: L.LightningDataModule | None) -> dict[str, xr.Dataset]:
        groups = super().run_outputs(datamodule)
        pp = groups["posterior_predictive"]
        y = pp[OBS].stack(sample=("chain", "draw"))
        quantiles = y.quantile(list(QUANTILES), dim="sample")
        observed = groups["observed_data"][OBS]
        lo, hi = quantiles.sel(quantile=QUANTILES[0]), quantiles.sel(quantile=QUANTILES[-1])
        coverage = float(((observed >= lo) & (observed <= hi)).mean())
        groups["summary"] = groups["summary"].assign(
            predictive_mean=y.mean("sample").transpose("time", "state"),
            predictive_quantiles=quantiles.transpose("quantile", "time", "state"),
        ).assign_attrs(coverage_90=coverage, predictive_draws=int(y.sizes["sample"]))
        self._post_attrs["coverage_90"] = coverage
        print(f"nde-lab: 90% posterior-predictive band covers {100 * coverage:.1f}% of the observations",
              file=sys.stderr)
        return groups
