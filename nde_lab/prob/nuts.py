"""NUTS chains in parallel worker processes over a flat unconstrained potential (the `NUTSTask` runner).

Each chain is one `pyro.infer.MCMC` with NUTS on `potential_fn`: U(u) = -(log p(y, theta(u)) +
log|d theta / d u|) at the flat unconstrained vector u (P,), the coordinates of
`nde_lab.prob.fast.Unconstrained`. The potential is summed directly from the program's priors and
observation distribution (no Pyro trace per leapfrog step) when the program keeps the base class's
`model`; otherwise it traces the model (`log_joint`). A solve that fails (a far-out proposal) is an
infinite potential: NUTS counts it as divergent instead of crashing.

Chains start from the Laplace approximation the fast posterior computes (`laplace_start`): at the MAP
plus a draw from N(0, jitter^2 cov), with the Laplace covariance as the initial inverse mass matrix,
so warm-up does not spend its first windows finding the typical set. They run in `workers` spawned
processes (`multiprocessing` "spawn": no forked torch state), chain c seeded with seed + c whatever
process runs it, so results are reproducible and independent of the number of workers.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyro
import torch
from torch import Tensor

from nde_lab.errors import NdeLabError, SolverError
from nde_lab.prob.fast import Unconstrained
from nde_lab.prob.inference import NUTSResult, _RecordingNUTS
from nde_lab.prob.programs import ProbProgram

__all__ = ["ChainSpec", "FlatPotential", "run_chain", "run_nuts_parallel"]

STAT_NAMES = ("diverging", "acceptance_rate", "step_size", "tree_depth", "n_steps")
_STAT_DTYPES = (bool, float, float, int, int)


class FlatPotential:
    """U(u) = -(log p(y, theta(u)) + log|J|) of a bound program at flat unconstrained u.

    Args:
        program: a bound `ProbProgram` (its data set by `bind`).
    `log_density(u)` takes u (n, P) and returns (n,); calling the object with Pyro's {"u": (P,)} returns
    the scalar potential. `n_evals` counts potential evaluations (one per leapfrog step).
    """

    def __init__(self, program: ProbProgram) -> None:
        self.program = program
        self.unc = Unconstrained(program)
        self.direct = type(program).model is ProbProgram.model  # no extra sites: sum the densities directly
        self.n_evals = 0

    def log_density(self, u: Tensor) -> Tensor:
        if not self.direct:
            return self.unc.log_density(u)
        return self._summed(*self.unc.to_params(u), u.shape[0])

    def _summed(self, params: dict[str, Tensor], lp: Tensor, n: int) -> Tensor:
        """log p(y, theta) + log|J| (n,) from the constrained params and the log-Jacobian `lp` (n,)."""
        prog = self.program
        for name, value in params.items():
            lp = lp + prog.prior(name).log_prob(value).reshape(n, -1).sum(-1)
        obs = prog.observation_dist(params).log_prob(prog.observed)
        return lp + obs.reshape(n, -1).sum(-1)

    def finite_log_density(self, u: Tensor) -> Tensor | None:
        """log_density(u)[0] for one point u (1, P), or None where it is not finite: a parameter that
        overflows its support (exp(u) = inf) or a solve that fails (a far-out proposal)."""
        params, log_jac = self.unc.to_params(u)  # one pass serves the check and the direct density
        if not all(bool(torch.isfinite(v.detach()).all()) for v in params.values()):
            return None
        try:
            lp = (self._summed(params, log_jac, 1) if self.direct else self.unc.log_density(u))[0]
        except SolverError:
            return None
        return lp if bool(torch.isfinite(lp)) else None

    def __call__(self, z: dict[str, Tensor]) -> Tensor:
        self.n_evals += 1
        u = z["u"]
        lp = self.finite_log_density(u.unsqueeze(0))
        if lp is None or not bool(torch.isfinite(lp)):
            return u.sum() * 0.0 + math.inf  # keeps a graph: zero gradient, NUTS marks it divergent
        return -lp


class _StartedNUTS(_RecordingNUTS):
    """`_RecordingNUTS` whose warm-up starts from a given inverse mass matrix (e.g. a Laplace covariance)."""

    def __init__(self, *args: Any, inverse_mass_matrix: Tensor | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_inverse_mass = inverse_mass_matrix

    def setup(self, warmup_steps, *args, **kwargs):
        super().setup(warmup_steps, *args, **kwargs)
        if self._start_inverse_mass is not None:
            m = self._start_inverse_mass
            self.mass_matrix_adapter.inverse_mass_matrix = {("u",): m if self._adapter.dense_mass else m.diagonal()}
            self._adapter.reset_step_size_adaptation(self._initial_params)


@dataclass
class ChainSpec:
    """Everything one worker needs to run chain `chain` (picklable for a spawned process)."""

    program: ProbProgram
    chain: int
    seed: int
    warmup: int
    draws: int
    u_init: np.ndarray
    inverse_mass: np.ndarray | None
    target_accept: float
    max_tree_depth: int
    full_mass: bool
    dtype: str


def run_chain(spec: ChainSpec) -> dict[str, Any]:
    """One NUTS chain; returns u draws (draws, P), stats records after warm-up, seconds, started (Unix
    time, s), pid, n_evals."""
    torch.set_num_threads(1)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, spec.dtype))
    try:
        pyro.set_rng_seed(spec.seed + spec.chain)
        potential = FlatPotential(spec.program)
        inv_mass = None if spec.inverse_mass is None else torch.as_tensor(spec.inverse_mass, dtype=torch.get_default_dtype())
        kernel = _StartedNUTS(potential_fn=potential, full_mass=spec.full_mass, target_accept_prob=spec.target_accept,
                              max_tree_depth=spec.max_tree_depth, inverse_mass_matrix=inv_mass)
        mcmc = pyro.infer.MCMC(kernel, num_samples=spec.draws, warmup_steps=spec.warmup, disable_progbar=True,
                               initial_params={"u": torch.as_tensor(spec.u_init, dtype=torch.get_default_dtype())})
        started, start = time.time(), time.perf_counter()
        with pyro.validation_enabled(False):  # the data was validated by `bind`; per-step checks cost ~10%
            mcmc.run()
        seconds = time.perf_counter() - start
        return {"u": mcmc.get_samples()["u"].detach().double().numpy(), "records": kernel.records[spec.warmup:],
                "seconds": seconds, "started": started, "pid": os.getpid(), "n_evals": potential.n_evals, "step_size": float(kernel.step_size)}
    finally:
        torch.set_default_dtype(previous)


def initial_points(u_map: np.ndarray, cov: np.ndarray, num_chains: int, seed: int, jitter: float) -> np.ndarray:
    """(num_chains, P) starts: u_map + N(0, jitter^2 cov), chain c from its own seeded generator."""
    chol = np.linalg.cholesky(cov)
    return np.stack([u_map + jitter * chol @ np.random.default_rng([seed, c]).standard_normal(u_map.size)
                     for c in range(num_chains)])


def run_nuts_parallel(program: ProbProgram, *, num_chains: int, warmup: int, draws: int, seed: int = 0,
                      target_accept: float = 0.8, max_tree_depth: int = 10, full_mass: bool = True,
                      workers: int = 1, u_map: np.ndarray | None = None, cov: np.ndarray | None = None,
                      jitter: float = 1.0, dtype: str = "float64") -> tuple[NUTSResult, dict[str, Any]]:
    """NUTS chains over `FlatPotential(program)`, `workers` at a time in spawned processes.

    Starts: with `u_map` and `cov` (a Laplace fit in unconstrained coordinates, (P,) and (P, P)) each
    chain starts at u_map + N(0, jitter^2 cov) and warm-up starts from cov as inverse mass matrix;
    without, every chain starts at the prior median with the identity (Pyro's default).
    Returns (NUTSResult with draws per parameter (chain, draw, ...) and stats (chain, draw)), and
    run facts: per-chain seconds and start times (Unix s), pids, potential evaluations, final step sizes, workers.
    """
    unc = Unconstrained(program)
    if u_map is None:
        pyro.set_rng_seed(seed)
        with torch.no_grad():
            median = {n: _median(program, n) for n in unc.names}
            u0 = unc.from_params(median)[0].double().numpy()
        starts, inverse_mass = np.repeat(u0[None], num_chains, axis=0), None
    else:
        starts, inverse_mass = initial_points(np.asarray(u_map, float), np.asarray(cov, float), num_chains, seed, jitter), cov
        potential = FlatPotential(program)
        for c in range(num_chains):  # a start with no finite density (a poor Laplace fit): move it to the MAP
            if potential.finite_log_density(torch.as_tensor(starts[c:c + 1], dtype=torch.get_default_dtype())) is None:
                starts[c] = np.asarray(u_map, float)
    specs = [ChainSpec(program, c, seed, warmup, draws, starts[c], None if inverse_mass is None else np.asarray(inverse_mass),
                       target_accept, max_tree_depth, full_mass, dtype) for c in range(num_chains)]
    start = time.perf_counter()
    workers = max(1, min(workers, num_chains))
    if workers > 1:  # an executor, not a Pool: a worker that dies raises BrokenProcessPool instead of hanging
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(run_chain, specs))
    else:
        results = [run_chain(s) for s in specs]
    seconds = time.perf_counter() - start
    u = torch.as_tensor(np.stack([r["u"] for r in results]), dtype=torch.get_default_dtype())  # (chain, draw, P)
    with torch.no_grad():
        params, _ = unc.to_params(u.reshape(-1, unc.dim))
    out = {k: v.reshape(num_chains, draws, *v.shape[1:]) for k, v in params.items()}
    stats = {n: np.array([[rec[i] for rec in r["records"]] for r in results], dtype=dt)
             for i, (n, dt) in enumerate(zip(STAT_NAMES, _STAT_DTYPES, strict=True))}
    if any(len(r["records"]) != draws for r in results):
        raise NdeLabError("a NUTS chain returned fewer records than draws; this is a bug in nde_lab.prob.nuts.")
    facts = {"chain_seconds": [round(r["seconds"], 2) for r in results], "chain_started": [r["started"] for r in results],
             "chain_pids": [r["pid"] for r in results],
             "gradient_evaluations": [r["n_evals"] for r in results], "step_size": [r["step_size"] for r in results],
             "workers": workers}
    return NUTSResult(draws=out, stats=stats, seconds=seconds), facts


def _median(program: ProbProgram, name: str) -> Tensor:
    """A central value of the prior of `name` (its median by 501 draws), shape (1, *event)."""
    with pyro.poutine.block():
        x = program.prior(name).sample((501,))
    return x.median(dim=0).values.unsqueeze(0)
