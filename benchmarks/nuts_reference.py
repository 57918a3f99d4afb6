"""Long NUTS reference for the hare-lynx Lotka-Volterra posterior: Pyro NUTS over a scipy forward-sensitivity solve.

The model is written here a second time, independently of `nde_lab.prob` (numpy + scipy only), from
the issue's statement:

    u = hare, v = lynx, t = years since 1900 (0..20), z = (u, v),
    du/dt = (alpha - beta v) u,  dv/dt = (-gamma + delta u) v,  z(0) = z_init,
    alpha, gamma ~ Normal(1, 0.5) truncated to (0, inf);  beta, delta ~ Normal(0.05, 0.05) truncated to (0, inf);
    z_init ~ LogNormal(log 10, 1) per species;  sigma ~ LogNormal(-1, 1) per species;
    y(t) ~ LogNormal(log z(t), sigma) for all 21 years (1900 included).

Unconstrained coordinates are the logs of the 8 positive scalars, in the order of `LABELS`, which is
the parameterisation Pyro's `biject_to` gives the lab's priors (exp for `greater_than(0)` and
`positive`), so the density on u is the lab's `Unconstrained.log_density` (checked to ~1e-6 in
`tests/test_prob_reference.py`). log z(t) and its sensitivities d log z(t) / d(alpha, beta, gamma,
delta, log z_init) come from the augmented forward-sensitivity system of the log-coordinate ODE,
integrated by LSODA (`scipy.integrate.odeint`) at rtol = atol = 1e-10 in ~2 ms, about 100x cheaper
than a torch rk4 solve with its gradient; the exact gradient of log p reaches Pyro's NUTS through a
`torch.autograd.Function`.

Usage (writes benchmarks/reference/lotka_volterra_nuts.json):

    OMP_NUM_THREADS=1 python -m benchmarks.nuts_reference --chains 4 --warmup 1000 --draws 2000 --jobs 2
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from scipy import integrate, special

from benchmarks.reference_common import (
    NumpyPotential,
    laplace_chain,
    laplace_mode,
    moment_summary,
    quantile_summary,
    reference_parser,
    run_chains,
    run_record,
    write_record,
)

__all__ = ["LABELS", "HareLynxPosterior", "ReferencePotential", "run_chain", "summarise"]

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "reference" / "lotka_volterra_nuts.json"
#: scalar parameters, in the order of the unconstrained vector u = log(theta)
LABELS = ["alpha", "beta", "gamma", "delta", "z_init[hare]", "z_init[lynx]", "sigma[hare]", "sigma[lynx]"]
_LOG_2PI = math.log(2 * math.pi)


def _rhs(x: np.ndarray, t: float, a: float, b: float, c: float, d: float) -> list[float]:
    """Log-coordinate LV plus forward sensitivities S = d(lu, lv)/d(a, b, c, d, lu0, lv0), state (14,)."""
    lu, lv, s00, s01, s02, s03, s04, s05, s10, s11, s12, s13, s14, s15 = x.tolist()
    u, v = math.exp(min(lu, 300.0)), math.exp(min(lv, 300.0))  # far-out proposals: finite, hopeless
    bv, du = b * v, d * u
    # d lu/dt = a - b v;  d lv/dt = -c + d u;  J = [[0, -b v], [d u, 0]] in log coordinates
    return [a - bv, -c + du,
            1.0 - bv * s10, -v - bv * s11, -bv * s12, -bv * s13, -bv * s14, -bv * s15,
            du * s00, du * s01, du * s02 - 1.0, du * s03 + u, du * s04, du * s05]


class HareLynxPosterior:
    """log p(y, theta(u)) + log|d theta / d u| and its gradient in u (8,), in numpy.

    Args:
        times: (T,) observation times, the first one is t0 (years since 1900).
        values: (T, 2) pelts (thousands), hare then lynx.
        rtol, atol: LSODA tolerances of the sensitivity solve.
    """

    def __init__(self, times: np.ndarray, values: np.ndarray, *, rtol: float = 1e-10, atol: float = 1e-10) -> None:
        self.times = np.asarray(times, dtype=float)
        self.log_y = np.log(np.asarray(values, dtype=float))
        self.rtol, self.atol = rtol, atol
        self.n_evals = 0

    @classmethod
    def hare_lynx(cls, **kwargs: float) -> HareLynxPosterior:
        from nde_lab.data.series import load_hare_lynx

        series = load_hare_lynx()
        return cls(series.times, series.values, **kwargs)

    def solve(self, rates: np.ndarray, log_z0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """log z(t) (T, 2) and its sensitivities (T, 2, 6) to (alpha, beta, gamma, delta, log z0)."""
        x0 = np.zeros(14)
        x0[:2] = log_z0
        x0[2 + 4], x0[8 + 5] = 1.0, 1.0
        sol, info = integrate.odeint(_rhs, x0, self.times, args=tuple(float(r) for r in rates), rtol=self.rtol,
                                     atol=self.atol, mxstep=200_000, full_output=True)
        if info["message"] != "Integration successful.":
            return np.full((len(self.times), 2), np.nan), np.zeros((len(self.times), 2, 6))
        return sol[:, :2], sol[:, 2:].reshape(-1, 2, 6)

    def log_density(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        """(log density, gradient (8,)) at unconstrained u (8,) = log(theta); -inf and zeros if the solve fails."""
        self.n_evals += 1
        u = np.asarray(u, dtype=float)
        if not np.isfinite(u).all() or np.abs(u).max() > 50:
            return -math.inf, np.zeros(8)
        theta = np.exp(u)
        grad = np.zeros(8)
        lp = 0.0
        # truncated normals on the rates (density renormalised by P(X > 0) = Phi(m / s)); jacobian theta
        for i, (m, s) in enumerate([(1.0, 0.5), (0.05, 0.05), (1.0, 0.5), (0.05, 0.05)]):
            r = (theta[i] - m) / s
            lp += -0.5 * r * r - math.log(s) - 0.5 * _LOG_2PI - special.log_ndtr(m / s) + u[i]
            grad[i] += -r / s * theta[i] + 1.0
        # log-normals on z_init (log 10, 1) and sigma (-1, 1): in u = log x, density N(u; m, s) exactly
        for i, (m, s) in zip(range(4, 8), [(math.log(10), 1.0)] * 2 + [(-1.0, 1.0)] * 2, strict=True):
            r = (u[i] - m) / s
            lp += -0.5 * r * r - math.log(s) - 0.5 * _LOG_2PI  # LogNormal pdf * |dx/du| = Normal pdf of log x
            grad[i] += -r / s
        mu, sens = self.solve(theta[:4], u[4:6])
        if not np.isfinite(mu).all():
            return -math.inf, np.zeros(8)
        sigma = theta[6:8]
        resid = self.log_y - mu  # (T, 2)
        lp += float(np.sum(-self.log_y - np.log(sigma) - 0.5 * _LOG_2PI - 0.5 * (resid / sigma) ** 2))
        dmu = resid / sigma**2  # d lp / d mu, (T, 2)
        g6 = np.einsum("ts,tsk->k", dmu, sens)  # d lp / d(alpha, beta, gamma, delta, lu0, lv0)
        grad[:4] += g6[:4] * theta[:4]
        grad[4:6] += g6[4:]
        grad[6:8] += np.sum(-1.0 + (resid / sigma) ** 2, axis=0)
        return float(lp), grad


#: the shared autograd wrapper (kept under its old name for importers)
ReferencePotential = NumpyPotential


def find_mode(model: HareLynxPosterior, *, seed: int = 0, starts: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """MAP in u by L-BFGS from prior-ish starts; returns (u_map, covariance from a finite-difference Hessian)."""
    return laplace_mode(model, np.log([1.0, 0.05, 1.0, 0.05, 30.0, 5.0, 0.3, 0.3]), seed=seed, starts=starts)


def run_chain(args: tuple[int, int, int, int, np.ndarray, np.ndarray, float]) -> dict:
    """One NUTS chain (seed, warmup, draws) started at an over-dispersed Laplace draw; returns theta draws."""
    chain, seed, warmup, draws, u_map, cov, target_accept = args
    out = laplace_chain(HareLynxPosterior.hare_lynx(), u_map, cov, chain=chain, seed=seed, warmup=warmup, draws=draws,
                        target_accept=target_accept)
    return {"theta": np.exp(out.pop("u")), **out}


def summarise(theta: np.ndarray) -> dict[str, dict[str, float]]:
    """theta (chain, draw, 8) -> per label: mean, sd, mcse_mean, mcse_sd, ess_bulk, ess_mean, r_hat, and q05,
    q50, q95 with their MCSEs and ESS (`reference_common.moment_summary`, `quantile_summary`)."""
    out = {}
    for i, label in enumerate(LABELS):
        x = theta[:, :, i]
        out[label] = {**moment_summary(x), **quantile_summary(x, (0.05, 0.5, 0.95))}
    return out


def main() -> None:
    args = reference_parser(__doc__, draws=2000, target_accept=0.9, out=OUT).parse_args()
    start = time.perf_counter()
    model = HareLynxPosterior.hare_lynx()
    u_map, cov = find_mode(model, seed=args.seed)
    jobs = [(c, args.seed, args.warmup, args.draws, u_map, cov, args.target_accept) for c in range(args.chains)]
    results = run_chains(run_chain, jobs, args.jobs)
    theta = np.stack([r["theta"] for r in results])  # (chain, draw, 8)
    summary = summarise(theta)
    record = {
        "model": "hare-lynx Lotka-Volterra, issue 4 (see benchmarks/nuts_reference.py)",
        "sampler": "pyro NUTS, dense mass matrix, potential from scipy LSODA forward sensitivities (rtol=atol=1e-10)",
        **run_record(args, results, start,
                     per_chain=("gradient_evaluations", "divergences", "accepted_fraction", "step_size")),
        "u_map": u_map.tolist(),
        "parameters": summary,
    }
    write_record(record, args.out)
    print(f"{'parameter':14s} {'mean':>10s} {'sd':>10s} {'mcse_mean':>10s} {'mcse_sd':>9s} {'ess_bulk':>9s} {'r_hat':>7s}")
    for label, row in summary.items():
        print(f"{label:14s} {row['mean']:10.5g} {row['sd']:10.4g} {row['mcse_mean']:10.3g} {row['mcse_sd']:9.3g} "
              f"{row['ess_bulk']:9.0f} {row['r_hat']:7.4f}")
    print(f"divergences {record['divergences']}, wall {record['wall_seconds']} s, written to {args.out}")


if __name__ == "__main__":
    main()
