"""Batched-start MAP and a Laplace covariance in unconstrained space: the warm start of the fast posterior.

Every evaluation here is one batched call of the program (one ODE solve for all points), so screening
thousands of prior draws, optimising dozens of starts and a finite-difference Hessian each cost about
one solve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyro
import torch
from pyro.distributions import constraints
from pyro.distributions.transforms import biject_to
from pyro.infer import autoguide as ag
from pyro.nn import PyroParam
from torch import Tensor

from nde_lab.prob.inference import log_joint, sample_prior
from nde_lab.prob.programs import ProbProgram

__all__ = ["LaplaceStart", "StudentTProposal", "Unconstrained", "init_guide_at", "laplace_start"]


class Unconstrained:
    """Flat unconstrained coordinates u (*, P) <-> named constrained parameters, with log|J|."""

    def __init__(self, program: ProbProgram) -> None:
        self.program = program
        self.names = program.parameter_names
        self.shapes = [program.param_shape(n) for n in self.names]
        self.transforms = [biject_to(program.prior(n).support) for n in self.names]
        self.sizes = [int(torch.Size(s).numel()) for s in self.shapes]
        self.dim = sum(self.sizes)

    def to_params(self, u: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """u (n, P) -> ({name: (n, *shape)}, log|det J| (n,))."""
        out, logdet, start = {}, torch.zeros(u.shape[0], dtype=u.dtype), 0
        for name, shape, size, t in zip(self.names, self.shapes, self.sizes, self.transforms, strict=True):
            x = u[:, start:start + size].reshape(u.shape[0], *shape)
            y = t(x)
            ld = t.log_abs_det_jacobian(x, y)
            logdet = logdet + ld.reshape(u.shape[0], -1).sum(-1)
            out[name], start = y, start + size
        return out, logdet

    def from_params(self, params: dict[str, Tensor]) -> Tensor:
        """{name: (n, *shape)} -> u (n, P)."""
        n = next(iter(params.values())).shape[0]
        return torch.cat([t.inv(params[name]).reshape(n, -1)
                          for name, t in zip(self.names, self.transforms, strict=True)], dim=-1)

    def log_density(self, u: Tensor) -> Tensor:
        """log p(y, theta(u)) + log|J|, shape (n,): the density whose mode and curvature we need."""
        params, logdet = self.to_params(u)
        return log_joint(self.program, params, u.shape[0]) + logdet


@dataclass
class LaplaceStart:
    """Mode u_map (P,) of the unconstrained posterior, its covariance (P, P) and the log density there."""

    u_map: Tensor
    cov: Tensor
    log_density: float
    params: dict[str, Tensor]


def _finite(x: Tensor) -> Tensor:
    return torch.where(torch.isfinite(x), x, torch.full_like(x, -torch.inf))


def laplace_start(program: ProbProgram, *, n_screen: int = 4096, n_starts: int = 32, steps: int = 200,
                  lr: float = 0.05, seed: int = 0, fd_step: float = 1e-4) -> LaplaceStart:
    """Screen `n_screen` prior draws, run Adam from the best `n_starts` (all in one batch), keep the best
    optimum, and estimate the Hessian there by central differences of batched gradients.

    The covariance is the inverse of the negated Hessian, with eigenvalues floored so it stays positive
    definite even if the optimum is not fully converged.
    """
    pyro.set_rng_seed(seed)
    unc = Unconstrained(program)
    with torch.no_grad():
        prior_params, _ = sample_prior(program, n_screen)
        u_all = unc.from_params(prior_params)
        scores = _finite(unc.log_density(u_all))
    best = torch.topk(scores, k=min(n_starts, n_screen)).indices
    u = u_all[best].clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=lr * 0.01)
    for _ in range(steps):
        opt.zero_grad()
        lp = _finite(unc.log_density(u))
        loss = -torch.where(torch.isfinite(lp), lp, torch.zeros_like(lp)).sum()
        loss.backward()
        with torch.no_grad():
            u.grad.nan_to_num_(0.0, 0.0, 0.0)
        opt.step()
        sched.step()
    with torch.no_grad():
        final = _finite(unc.log_density(u))
    i = int(torch.argmax(final))
    u_map = u[i].detach()
    hess = _fd_hessian(unc, u_map, fd_step)
    evals, evecs = torch.linalg.eigh(-0.5 * (hess + hess.T))
    evals = evals.clamp_min(1e-6 * evals.abs().max().clamp_min(1.0))
    cov = evecs @ torch.diag(1.0 / evals) @ evecs.T
    params, _ = unc.to_params(u_map.unsqueeze(0))
    return LaplaceStart(u_map=u_map, cov=0.5 * (cov + cov.T), log_density=float(final[i]),
                        params={k: v[0].detach() for k, v in params.items()})


def _fd_hessian(unc: Unconstrained, u: Tensor, h: float) -> Tensor:
    p = u.numel()
    eye = torch.eye(p, dtype=u.dtype)
    pts = torch.cat([u + h * eye, u - h * eye]).requires_grad_(True)  # (2P, P): one batched solve
    lp = unc.log_density(pts)
    (grad,) = torch.autograd.grad(lp.sum(), pts)
    return (grad[:p] - grad[p:]) / (2 * h)  # row i: d grad / d u_i


def init_guide_at(guide: ag.AutoGuide, start: LaplaceStart) -> None:
    """Put an autoguide's location at the mode (and, for AutoMultivariateNormal, its covariance at the
    Laplace covariance). Call before the optimiser collects the guide's parameters."""
    guide()  # build the prototype and parameters
    with torch.no_grad():
        if isinstance(guide, ag.AutoMultivariateNormal):
            guide.loc.copy_(start.u_map)
            chol = torch.linalg.cholesky(start.cov)
            scale = chol.diagonal()
            guide.scale = PyroParam(scale.clone(), constraints.softplus_positive)
            guide.scale_tril = PyroParam((chol / scale[:, None]).clone(), constraints.unit_lower_cholesky)
        elif isinstance(guide, ag.AutoLowRankMultivariateNormal | ag.AutoIAFNormal) and hasattr(guide, "loc"):
            guide.loc.copy_(start.u_map)
        elif isinstance(guide, ag.AutoNormal):
            unc_start = 0
            std = start.cov.diagonal().sqrt()
            for name, site in guide.prototype_trace.iter_stochastic_nodes():
                size = site["fn"].event_shape.numel()
                loc = getattr(guide.locs, name)
                loc.copy_(start.u_map[unc_start:unc_start + size].reshape(loc.shape))
                guide.scales.__setattr__(name, PyroParam(std[unc_start:unc_start + size].reshape(loc.shape).clone(),
                                                         constraints.softplus_positive, site["fn"].event_dim))
                unc_start += size


class StudentTProposal:
    """A multivariate Student-t in unconstrained space, mapped to the constrained parameters.

    Heavier tails than the Gaussian guide it is fitted to keep the importance ratios p/q bounded,
    which is what a small Pareto k needs (Vehtari et al. 2024, section 3). Call it as m -> (params, log q).
    """

    def __init__(self, program: ProbProgram, loc: Tensor, cov: Tensor, *, df: float = 5.0, inflate: float = 1.0):
        self.unc = Unconstrained(program)
        self.loc, self.cov, self.df, self.inflate = loc, cov, float(df), float(inflate)
        tril = torch.linalg.cholesky(cov * inflate**2)
        self.dist = pyro.distributions.MultivariateStudentT(torch.tensor(self.df, dtype=loc.dtype), loc, tril)

    @classmethod
    def from_guide(cls, program: ProbProgram, guide: ag.AutoGuide, *, n: int = 4096, df: float = 5.0,
                   inflate: float = 1.0) -> StudentTProposal:
        """Fit loc and covariance to n guide draws (moments in unconstrained space): works for any guide."""
        from nde_lab.prob.inference import sample_guide

        unc = Unconstrained(program)
        with torch.no_grad():
            values, _ = sample_guide(guide, n)
            u = unc.from_params({k: values[k] for k in unc.names})
        loc = u.mean(0)
        cov = torch.cov(u.T).reshape(unc.dim, unc.dim)
        return cls(program, loc, cov, df=df, inflate=inflate)

    @classmethod
    def from_weighted(cls, program: ProbProgram, proposals: dict[str, Tensor], log_weights: np.ndarray, *,
                      df: float = 3.0, inflate: float = 1.0) -> StudentTProposal:
        """Refit loc and covariance to importance-weighted draws: one adaptation step of population Monte
        Carlo (Cappe et al. 2004). The weighted moments estimate the *target's* mean and covariance, so a
        proposal fitted to a too-narrow guide widens towards the posterior's spread.

        Args:
            proposals: {name: (S, *shape)} constrained draws of the previous proposal.
            log_weights: (S,) their (Pareto-smoothed) log importance weights; -inf drops a draw.
        """
        unc = Unconstrained(program)
        u = unc.from_params({k: proposals[k] for k in unc.names}).double()
        lw = torch.as_tensor(np.asarray(log_weights, dtype=np.float64))
        keep = torch.isfinite(lw) & torch.isfinite(u).all(-1)
        u, w = u[keep], torch.softmax(lw[keep], dim=0)
        loc = (w[:, None] * u).sum(0)
        dev = u - loc
        cov = (w[:, None, None] * dev[:, :, None] * dev[:, None, :]).sum(0)
        evals, evecs = torch.linalg.eigh(0.5 * (cov + cov.T))
        evals = evals.clamp_min(1e-8 * float(evals.max().clamp_min(1e-12)))  # degenerate weights: stay PD
        cov = evecs @ torch.diag(evals) @ evecs.T
        dtype = torch.get_default_dtype()
        return cls(program, loc.to(dtype), (0.5 * (cov + cov.T)).to(dtype), df=df, inflate=inflate)

    def __call__(self, m: int) -> tuple[dict[str, Tensor], Tensor]:
        u = self.dist.sample((m,))
        params, logdet = self.unc.to_params(u)
        # q(theta) = q_u(u) / |d theta / d u|
        return params, self.dist.log_prob(u) - logdet
