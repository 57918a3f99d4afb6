"""Long NUTS reference (and exact quadrature) for a heavy-tailed, weakly identified ODE posterior.

The model (issue 9, finding 8) is logistic growth observed only in its early, near-exponential phase,
so the carrying capacity K is bounded from below by the data and its upper tail is the prior's:

    dy/dt = r y (1 - y / K),  y(0) = 1,  closed form y(t) = K / (1 + (K - 1) exp(-r t)),
    r ~ LogNormal(0, 1),  K ~ LogNormal(log 100, 1.5),  sigma ~ LogNormal(-2, 0.5),
    y_i ~ LogNormal(log y(t_i), sigma) at t = 0, 0.5, ..., 3 (benchmarks/reference/logistic_early_growth.csv,
    simulated by `simulate()` with r = 1, K = 50, sigma = 0.1).

The lab declares it as `ODEProgram(dynamics="logistic", ...)` (tests/recipes/logistic_heavy_tail.yaml),
solved by rk4. Here it is written a second time, independently of `nde_lab.prob`, from the closed form:
u = (log r, log K, log sigma) are the unconstrained coordinates Pyro's `biject_to` gives the lab's
LogNormal priors, and log p(y, theta(u)) + log|J| is a few numpy/torch lines (checked equal to the lab's
`Unconstrained.log_density` in tests/test_heavy_tail_posterior.py).

Two references, stored together in benchmarks/reference/logistic_heavy_tail_nuts.json:

- long Pyro NUTS (dense mass matrix) on the closed-form density: per parameter the 1% / 50% / 99%
  quantiles with their Monte Carlo errors (ArviZ `az.mcse(..., method="quantile", prob=p)`), mean, sd,
  bulk and tail ESS and R-hat;
- exact marginal quantiles by quadrature on a fine grid in u (3 dimensions are cheap), which the NUTS
  quantiles must match within their MCSE (tested).

Usage (writes the JSON; 691 s wall as 2 processes on a loaded 2-core machine, 0 divergences):

    OMP_NUM_THREADS=1 python -m benchmarks.heavy_tail_reference --chains 4 --warmup 1000 --draws 2500 --jobs 2
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.reference_common import (
    quantile_summary,
    reference_parser,
    run_chains,
    run_nuts,
    run_record,
    write_record,
)

__all__ = ["DATA", "LABELS", "PRIORS", "PROBS", "load_data", "log_density", "quadrature_quantiles", "run_chain", "simulate", "summarise"]

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "reference" / "logistic_early_growth.csv"
OUT = ROOT / "benchmarks" / "reference" / "logistic_heavy_tail_nuts.json"
#: parameters in the order of u; each prior is LogNormal(loc, scale), i.e. u_i ~ Normal(loc, scale)
LABELS = ["r", "K", "sigma"]
PRIORS = [(0.0, 1.0), (math.log(100.0), 1.5), (-2.0, 0.5)]
PROBS = (0.01, 0.5, 0.99)
Y0 = 1.0
_LOG_2PI = math.log(2 * math.pi)


def simulate(seed: int = 0, r: float = 1.0, K: float = 50.0, sigma: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The data set: times (7,) = 0, 0.5, ..., 3 and y (7,) rounded to 4 decimals (as stored in DATA)."""
    rng = np.random.default_rng(seed)
    t = np.arange(0, 3.01, 0.5)
    y = K / (1 + (K / Y0 - 1) * np.exp(-r * t)) * np.exp(sigma * rng.normal(size=t.size))
    return t, np.round(y, 4)


def load_data() -> tuple[np.ndarray, np.ndarray]:
    """(times, y) from the CSV (comment lines start with '#')."""
    rows = np.loadtxt(DATA, delimiter=",", comments="#", skiprows=4)
    return rows[:, 0], rows[:, 1]


def log_density(u, t: np.ndarray, y: np.ndarray):
    """log p(y, theta(u)) + log|d theta / d u| for u (..., 3) = log(r, K, sigma); numpy or torch (autograd).

    In u, a LogNormal(m, s) prior times its Jacobian is the Normal(m, s) density of u; the likelihood is
    LogNormal(log y(t_i), sigma) with log y(t) = log K - log1p((K / y0 - 1) exp(-r t)) (y0 = 1).
    """
    xp = torch if isinstance(u, torch.Tensor) else np
    lr, lk, ls = u[..., 0], u[..., 1], u[..., 2]
    lp = 0.0
    for ui, (m, s) in zip((lr, lk, ls), PRIORS, strict=True):
        lp = lp - 0.5 * ((ui - m) / s) ** 2 - math.log(s) - 0.5 * _LOG_2PI
    t_ = xp.asarray(t) if xp is np else torch.as_tensor(t, dtype=u.dtype)
    log_y = np.log(y) if xp is np else torch.as_tensor(np.log(y), dtype=u.dtype)
    r, k = xp.exp(lr)[..., None], xp.exp(lk)[..., None]
    mu = lk[..., None] - xp.log1p((k / Y0 - 1) * xp.exp(-r * t_))
    sigma = xp.exp(ls)[..., None]
    resid = (log_y - mu) / sigma
    return lp + (-log_y - ls[..., None] - 0.5 * _LOG_2PI - 0.5 * resid**2).sum(-1)


def quadrature_quantiles(t: np.ndarray, y: np.ndarray, *, n: int = 241, probs=PROBS) -> dict[str, dict[str, float]]:
    """Exact marginal quantiles (theta units) by quadrature on an n^3 grid in u (box found from a coarse pass).

    Each marginal's CDF is interpolated linearly between cell edges (midpoint masses). Two coarse passes
    shrink the box to the cells whose marginal mass exceeds 1e-10 of the total (one cell of margin), so
    the final grid resolves the narrow directions (log r has sd ~0.03) and the grid error is far below
    any Monte Carlo error (tested against a coarser grid).
    """
    lo, hi = np.array([-3.0, -2.0, -6.0]), np.array([3.0, 16.0, 1.0])
    for size in (61, 61, 61, n):
        axes = [np.linspace(a, b, size) for a, b in zip(lo, hi, strict=True)]
        logp = np.empty((size, size, size))
        grid = np.stack(np.meshgrid(axes[1], axes[2], indexing="ij"), axis=-1)  # (size, size, 2)
        for i, a in enumerate(axes[0]):
            u = np.concatenate([np.full((*grid.shape[:-1], 1), a), grid], axis=-1)
            logp[i] = log_density(u, t, y)
        p = np.exp(logp - logp.max())
        if size != n:  # shrink the box to the cells that matter, one cell of margin
            for d in range(3):
                marginal = p.sum(axis=tuple(e for e in range(3) if e != d))
                idx = np.flatnonzero(marginal > 1e-10 * marginal.sum())
                step = axes[d][1] - axes[d][0]
                lo[d], hi[d] = axes[d][idx[0]] - step, axes[d][idx[-1]] + step
    out = {}
    for d, label in enumerate(LABELS):
        marginal = p.sum(axis=tuple(e for e in range(3) if e != d))
        step = axes[d][1] - axes[d][0]
        edges = np.concatenate([[axes[d][0] - step / 2], axes[d] + step / 2])
        cdf = np.concatenate([[0.0], np.cumsum(marginal)]) / marginal.sum()
        out[label] = {f"q{round(100 * q):02d}": float(np.exp(np.interp(q, cdf, edges))) for q in probs}
        out[label]["grid_step_u"] = float(step)
    return out


def run_chain(args: tuple[int, int, int, int, float]) -> dict:
    """One Pyro NUTS chain on the closed-form density (dense mass), from an over-dispersed start."""
    chain, seed, warmup, draws, target_accept = args
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    t, y = load_data()
    rng = np.random.default_rng(seed + 1000 * chain)
    u_init = np.array([0.0, 5.0, -2.5]) + rng.normal(0, [0.05, 1.0, 0.3])
    out = run_nuts(lambda u: -log_density(u, t, y), u_init, seed=seed + chain, warmup=warmup, draws=draws,
                   target_accept=target_accept)
    return {"theta": np.exp(out.pop("u")), **out}


def summarise(theta: np.ndarray, probs=PROBS) -> dict[str, dict[str, float]]:
    """theta (chain, draw, 3) -> per label: mean, sd, ess_bulk, ess_tail and R-hat (ArviZ's definitions), then
    the quantiles q01/q50/q99 with ArviZ's quantile MCSEs and ESSs (`reference_common.quantile_summary`)."""
    import arviz as az

    out = {}
    for i, label in enumerate(LABELS):
        x = theta[:, :, i]
        out[label] = {"mean": float(x.mean()), "sd": float(x.std(ddof=1)), "ess_bulk": float(az.ess(x, method="bulk")),
                      "ess_tail": float(az.ess(x, method="tail")), "r_hat": float(az.rhat(x)),
                      **quantile_summary(x, probs)}
    return out


def main() -> None:
    args = reference_parser(__doc__, draws=2500, target_accept=0.95, out=OUT).parse_args()
    start = time.perf_counter()
    t, y = load_data()
    if not np.allclose(np.stack(simulate()), np.stack([t, y])):
        raise SystemExit(f"{DATA} differs from simulate(): regenerate it or fix the simulation.")
    exact = quadrature_quantiles(t, y)
    coarse = quadrature_quantiles(t, y, n=161)
    for label in LABELS:  # grid error estimate: the change from a 161^3 to the 241^3 grid
        exact[label]["grid_error"] = {key: abs(exact[label][key] - coarse[label][key])
                                      for key in coarse[label] if key.startswith("q")}
    jobs = [(c, args.seed, args.warmup, args.draws, args.target_accept) for c in range(args.chains)]
    results = run_chains(run_chain, jobs, args.jobs)
    theta = np.stack([r["theta"] for r in results])  # (chain, draw, 3)
    summary = summarise(theta)
    for label in LABELS:
        summary[label]["quadrature"] = exact[label]
    k = summary["K"]
    record = {
        "model": "logistic growth observed early (issue 9 finding 8; see benchmarks/heavy_tail_reference.py)",
        "data": str(DATA.relative_to(ROOT)),
        "sampler": "pyro NUTS, dense mass matrix, closed-form potential in u = log(r, K, sigma)",
        **run_record(args, results, start),
        "K_q99_over_median": k["q99"] / k["q50"],
        "parameters": summary,
    }
    write_record(record, args.out)
    print(f"{'parameter':9s} {'q01':>10s} {'q50':>10s} {'q99':>10s}   (mcse)   exact q01/q50/q99   r_hat ess_tail")
    for label, row in summary.items():
        ex = row["quadrature"]
        print(f"{label:9s} {row['q01']:10.4g} {row['q50']:10.4g} {row['q99']:10.4g}   ({row['mcse_q01']:.2g}, "
              f"{row['mcse_q50']:.2g}, {row['mcse_q99']:.2g})   {ex['q01']:.4g}/{ex['q50']:.4g}/{ex['q99']:.4g}   "
              f"{row['r_hat']:.4f} {row['ess_tail']:.0f}")
    print(f"K q99/median {record['K_q99_over_median']:.1f}; divergences {record['divergences']}, "
          f"wall {record['wall_seconds']} s, written to {args.out}")


if __name__ == "__main__":
    main()
