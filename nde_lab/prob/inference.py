"""Inference over a `ProbProgram`: autoguides by name, batched densities, NUTS with per-draw stats, PSIS."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import MCMC, NUTS
from pyro.infer import autoguide as ag
from torch import Tensor

from nde_lab.errors import RecipeError
from nde_lab.prob.diagnostics import psis, systematic_resample
from nde_lab.prob.programs import OBS, ProbProgram

__all__ = [
    "GUIDES",
    "GuideName",
    "ImportanceResult",
    "NUTSResult",
    "batched",
    "importance_resample",
    "log_joint",
    "make_guide",
    "run_nuts",
    "sample_guide",
    "sample_prior",
]

GuideName = Literal["AutoNormal", "AutoMultivariateNormal", "AutoLowRankMultivariateNormal", "AutoIAFNormal"]
GUIDES = ("AutoNormal", "AutoMultivariateNormal", "AutoLowRankMultivariateNormal", "AutoIAFNormal")
PLATE = "_draws"


def batched(fn: Callable, n: int) -> Callable:
    """Wrap a Pyro callable so that every site carries a leading batch of size n (plate at dim -1)."""
    def wrapped(*args, **kwargs):
        with pyro.plate(PLATE, n, dim=-1):
            return fn(*args, **kwargs)
    return wrapped


def make_guide(name: str, program: ProbProgram, *, init_scale: float = 0.05, rank: int | None = None,
               hidden_dim: list[int] | None = None) -> ag.AutoGuide:
    """An autoguide by name for `program.model`, initialised at the prior medians (scale `init_scale`)."""
    if name not in GUIDES:
        raise RecipeError(f"guide must be one of {list(GUIDES)}, got {name!r}.")
    init = ag.init_to_median(num_samples=51)
    if name == "AutoNormal":
        return ag.AutoNormal(program.model, init_loc_fn=init, init_scale=init_scale)
    if name == "AutoMultivariateNormal":
        return ag.AutoMultivariateNormal(program.model, init_loc_fn=init, init_scale=init_scale)
    if name == "AutoLowRankMultivariateNormal":
        return ag.AutoLowRankMultivariateNormal(program.model, init_loc_fn=init, init_scale=init_scale, rank=rank)
    # AutoIAFNormal forwards extra keywords to its AffineAutoregressive transform: it takes no init_scale
    return ag.AutoIAFNormal(program.model, hidden_dim=hidden_dim, init_loc_fn=init)


def _site_sum(trace: poutine.Trace, names: list[str] | None = None) -> Tensor:
    total = 0.0
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or (names is not None and name not in names):
            continue
        lp = site["fn"].log_prob(site["value"])
        total = total + lp
    return total


def log_joint(program: ProbProgram, params: dict[str, Tensor], n: int) -> Tensor:
    """log p(y, params) for a batch of n parameter sets (leading dim n): shape (n,). One batched solve."""
    conditioned = poutine.condition(program.model, data=params)
    trace = poutine.trace(batched(conditioned, n)).get_trace()
    return _site_sum(trace)


def sample_guide(guide: ag.AutoGuide, n: int) -> tuple[dict[str, Tensor], Tensor]:
    """n draws from the guide (constrained values by parameter name) and log q of each, shape (n,)."""
    trace = poutine.trace(batched(guide, n)).get_trace()
    values = {name: site["value"] for name, site in trace.nodes.items()
              if site["type"] == "sample" and not site["infer"].get("is_auxiliary")}
    return values, _site_sum(trace)


def sample_prior(program: ProbProgram, n: int) -> tuple[dict[str, Tensor], Tensor]:
    """n draws of the parameters from the prior and of y from the prior predictive (*obs_shape)."""
    trace = poutine.trace(batched(lambda: program.model(observed=False), n)).get_trace()
    params = {name: trace.nodes[name]["value"] for name in program.parameter_names}
    return params, trace.nodes[OBS]["value"]


@dataclass
class ImportanceResult:
    """Importance-resampled posterior draws, shaped (chain, draw, ...) per parameter."""

    draws: dict[str, Tensor]
    pareto_k: float
    ess_is: float
    n_proposals: int
    log_weights: np.ndarray = field(repr=False)
    proposals: dict[str, Tensor] | None = field(default=None, repr=False)


def importance_resample(program: ProbProgram, proposal: ag.AutoGuide | Callable[[int], tuple[dict, Tensor]], *,
                        num_chains: int, num_draws: int, chunk: int = 1024, seed: int = 0) -> ImportanceResult:
    """Correct proposal draws towards the exact posterior by Pareto-smoothed importance resampling.

    `proposal` is an autoguide, or a callable m -> (params {name: (m, ...)}, log q (m,)).
    num_chains * num_draws proposals are drawn in chunks (one batched solve each);
    log w = log p(y, theta) - log q(theta) is Pareto-smoothed over all of them (k estimated from the
    pooled weights); each chain is then an independent block of num_draws proposals resampled
    systematically with its own normalised weights, so between-chain R-hat and ESS measure the
    importance-sampling variability.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    total = num_chains * num_draws
    parts: list[dict[str, Tensor]] = []
    logw: list[Tensor] = []
    with torch.no_grad():
        for start in range(0, total, chunk):
            m = min(chunk, total - start)
            if isinstance(proposal, ag.AutoGuide):
                values, log_q = sample_guide(proposal, m)
            else:
                values, log_q = proposal(m)
            params = {k: values[k] for k in program.parameter_names}
            logw.append(log_joint(program, params, m) - log_q)
            parts.append(params)
    draws = {k: torch.cat([p[k] for p in parts]) for k in program.parameter_names}
    lw = torch.cat(logw).double().numpy()
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    finite = np.isfinite(lw)
    if finite.sum() < 10:
        raise RuntimeError("importance sampling: fewer than 10 guide draws have a finite target density.")
    smoothed = np.full_like(lw, -np.inf)
    smoothed[finite], k = psis(lw[finite])
    w = np.exp(smoothed)
    ess_is = float(1.0 / np.sum(w**2))
    index = []
    for c in range(num_chains):
        block = smoothed[c * num_draws:(c + 1) * num_draws]
        index.append(c * num_draws + systematic_resample(block, num_draws, rng=rng))
    idx = torch.as_tensor(np.stack(index))  # (chain, draw)
    out = {name: value[idx] for name, value in draws.items()}
    return ImportanceResult(draws=out, pareto_k=k, ess_is=ess_is, n_proposals=total, log_weights=smoothed, proposals=draws)


class _RecordingNUTS(NUTS):
    """Pyro's NUTS that also records, per iteration, divergence, acceptance, step size and tree depth."""

    def setup(self, warmup_steps, *args, **kwargs):
        self.records: list[tuple[bool, float, float, int, int]] = []
        self._n_leapfrog = 0
        super().setup(warmup_steps, *args, **kwargs)

    def _build_basetree(self, *args, **kwargs):
        self._n_leapfrog += 1
        return super()._build_basetree(*args, **kwargs)

    def sample(self, params):
        self._n_leapfrog = 0
        n_div, prev_mean = len(self._divergences), self._mean_accept_prob
        warm = self._t < self._warmup_steps
        z = super().sample(params)
        n = self._t - self._warmup_steps if self._t > self._warmup_steps else self._t
        accept = n * self._mean_accept_prob - (n - 1) * prev_mean
        diverging = len(self._divergences) > n_div
        steps = max(self._n_leapfrog, 1)
        self.records.append((diverging and not warm, float(accept), float(self.step_size),
                             math.floor(math.log2(steps)) + 1, steps))
        return z


@dataclass
class NUTSResult:
    """NUTS draws per parameter (chain, draw, ...) and per-draw sample stats (chain, draw)."""

    draws: dict[str, Tensor]
    stats: dict[str, np.ndarray]
    seconds: float = 0.0


def run_nuts(program: ProbProgram, *, num_chains: int, warmup: int, draws: int, seed: int = 0,
             target_accept: float = 0.8, max_tree_depth: int = 10, progress: bool = True) -> NUTSResult:
    """Pyro NUTS (Hoffman & Gelman 2014), one `pyro.infer.MCMC` per chain run in turn with seed + chain.

    Chains are run sequentially in this process (deterministic, no process pool to pickle the
    program into); each starts at a draw from the prior ("init_to_median" jittered by the seed).
    """
    import time

    start = time.perf_counter()
    chains: list[dict[str, Tensor]] = []
    stats: list[list[tuple]] = []
    for c in range(num_chains):
        pyro.set_rng_seed(seed + c)
        kernel = _RecordingNUTS(program.model, target_accept_prob=target_accept, max_tree_depth=max_tree_depth,
                                init_strategy=ag.init_to_sample if c else ag.init_to_median, jit_compile=False)
        mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, num_chains=1, disable_progbar=not progress)
        mcmc.run()
        chains.append(mcmc.get_samples())
        stats.append(kernel.records[warmup:])
    out = {k: torch.stack([ch[k] for ch in chains]) for k in program.parameter_names}
    arr = np.array(stats, dtype=object)
    names = ["diverging", "acceptance_rate", "step_size", "tree_depth", "n_steps"]
    dtypes = [bool, float, float, int, int]
    st = {n: np.array([[rec[i] for rec in chain] for chain in stats], dtype=dt)
          for i, (n, dt) in enumerate(zip(names, dtypes, strict=True))}
    del arr
    return NUTSResult(draws=out, stats=st, seconds=time.perf_counter() - start)
