"""Long NUTS reference for the 1978 boarding-school influenza outbreak: SIR with negative-binomial bed counts.

The model (issue 12; Grinsztajn, Semenova, Margossian & Riou 2021, "Bayesian workflow for disease
transmission modeling in Stan"), written here independently of `nde_lab.prob` (numpy + scipy only):

    N = 763 pupils, t = days since 1978-01-21, t0 = 0, (S, I, R)(0) = (762, 1, 0),
    dS/dt = -beta S I / N,  dI/dt = beta S I / N - gamma I,  dR/dt = gamma I,
    beta ~ Normal(2, 1) truncated to (0, inf);  gamma ~ Normal(0.4, 0.5) truncated to (0, inf);
    phi ~ InverseGamma(concentration 1, rate 5)  (1 / phi ~ Exponential(5), as in the Stan case study);
    in_bed(t) ~ NegativeBinomial(mean I(t), concentration phi) for t = 1, ..., 14
      (Pyro: total_count = phi, logits = log I - log phi; variance I + I^2 / phi).

Unconstrained coordinates u = log(beta, gamma, phi). Only S and I enter the likelihood (R = N - S - I),
so the solve integrates (S, log I) and the forward sensitivities d(S, log I) / d(beta, gamma)
(6 equations; log I keeps I > 0 for any proposal) with LSODA (`scipy.integrate.odeint`) at
rtol = atol = 1e-10; the exact gradient of log p reaches Pyro's NUTS through
`reference_common.NumpyPotential`. Derived quantities: R0 = beta / gamma, recovery_time = 1 / gamma (days).

Writes benchmarks/reference/sir_boarding_school_nuts.json (per quantity: mean, sd, q05/q50/q95 with
their MCSEs, bulk and tail ESS, R-hat) and the draws themselves, theta (chain, draw, 3) as float32 in
benchmarks/reference/sir_boarding_school_draws.npz (tests split them to check the comparison rule):

    OMP_NUM_THREADS=1 python -m benchmarks.sir_reference --chains 4 --warmup 1000 --draws 5000 --jobs 2
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from scipy import integrate, special

from benchmarks.reference_common import (
    laplace_chain,
    laplace_mode,
    reference_parser,
    run_chains,
    summarise_draws,
    write_reference,
)

__all__ = ["DERIVED", "DRAWS", "LABELS", "OUT", "PROBS", "OutbreakPosterior", "derived", "run_chain", "summarise"]

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "reference" / "sir_boarding_school_nuts.json"
DRAWS = ROOT / "benchmarks" / "reference" / "sir_boarding_school_draws.npz"
#: parameters, in the order of u = log(theta)
LABELS = ["beta", "gamma", "phi"]
#: derived quantities reported with the parameters
DERIVED = ["R0", "recovery_time"]
PROBS = (0.05, 0.5, 0.95)
N_PUPILS = 763.0
Z0 = (762.0, 1.0, 0.0)
T0 = 0.0
#: truncated-normal priors (loc, scale) of beta and gamma; phi ~ InverseGamma(PHI_SHAPE, PHI_RATE)
RATE_PRIORS = [(2.0, 1.0), (0.4, 0.5)]
PHI_SHAPE, PHI_RATE = 1.0, 5.0
_LOG_2PI = math.log(2 * math.pi)


def _rhs(x: np.ndarray, t: float, b: float, g: float) -> list[float]:
    """(S, L = log I) and their sensitivities to (beta, gamma): state (6,) = S, L, S_b, S_g, L_b, L_g."""
    s, lg, s_b, s_g, l_b, l_g = x.tolist()
    i = math.exp(min(lg, 50.0))
    n = N_PUPILS
    # dS/dt = -b S I / n,  dL/dt = b S / n - g;  J = [[-b I / n, -b S I / n], [b / n, 0]]
    j11, j12, j21 = -b * i / n, -b * s * i / n, b / n
    return [-b * s * i / n, b * s / n - g,
            j11 * s_b + j12 * l_b - s * i / n, j11 * s_g + j12 * l_g,
            j21 * s_b + s / n, j21 * s_g - 1.0]


class OutbreakPosterior:
    """log p(y, theta(u)) + log|d theta / d u| and its gradient in u = log(beta, gamma, phi), in numpy.

    Args:
        times: (T,) observation times (days since 1978-01-21), all after t0 = 0.
        counts: (T,) pupils in bed.
        rtol, atol: LSODA tolerances of the sensitivity solve.
    """

    def __init__(self, times: np.ndarray, counts: np.ndarray, *, rtol: float = 1e-10, atol: float = 1e-10) -> None:
        self.times = np.asarray(times, dtype=float)
        self.y = np.asarray(counts, dtype=float)
        self.rtol, self.atol = rtol, atol
        self.n_evals = 0
        self._log_fact = special.gammaln(self.y + 1.0)

    @classmethod
    def boarding_school(cls, **kwargs: float) -> OutbreakPosterior:
        from nde_lab.data.outbreaks import load_boarding_school

        series = load_boarding_school(["in_bed"])
        return cls(series.times, series.values[:, 0], **kwargs)

    def solve(self, beta: float, gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """S (T,), log I (T,) at the observation times and d(S, log I)/d(beta, gamma) (T, 2, 2)."""
        x0 = np.array([Z0[0], math.log(Z0[1]), 0.0, 0.0, 0.0, 0.0])
        grid = np.concatenate([[T0], self.times])
        sol, info = integrate.odeint(_rhs, x0, grid, args=(float(beta), float(gamma)), rtol=self.rtol, atol=self.atol,
                                     mxstep=200_000, full_output=True)
        if info["message"] != "Integration successful.":
            nan = np.full(len(self.times), np.nan)
            return nan, nan, np.zeros((len(self.times), 2, 2))
        sol = sol[1:]
        return sol[:, 0], sol[:, 1], sol[:, 2:].reshape(-1, 2, 2)

    def log_density(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        """(log density, gradient (3,)) at unconstrained u (3,); -inf and zeros if the solve fails."""
        self.n_evals += 1
        u = np.asarray(u, dtype=float)
        if not np.isfinite(u).all() or np.abs(u).max() > 30:
            return -math.inf, np.zeros(3)
        beta, gamma, phi = np.exp(u)
        grad = np.zeros(3)
        lp = 0.0
        # truncated normals (renormalised by P(X > 0) = Phi(m / s)) on beta, gamma, with the Jacobian exp(u)
        for k, (m, s) in enumerate(RATE_PRIORS):
            x = math.exp(u[k])
            r = (x - m) / s
            lp += -0.5 * r * r - math.log(s) - 0.5 * _LOG_2PI - special.log_ndtr(m / s) + u[k]
            grad[k] += -r / s * x + 1.0
        # InverseGamma(a, b): a log b - lgamma(a) - (a + 1) log phi - b / phi, plus log phi for the Jacobian
        a, b = PHI_SHAPE, PHI_RATE
        lp += a * math.log(b) - math.lgamma(a) - a * u[2] - b / phi
        grad[2] += -a + b / phi
        _, log_i, sens = self.solve(beta, gamma)
        if not np.isfinite(log_i).all():
            return -math.inf, np.zeros(3)
        mu = np.exp(log_i)
        y = self.y
        log_phi_mu = np.logaddexp(u[2], log_i)  # log(phi + mu)
        # NB(y; mean mu, concentration phi) = C(y + phi - 1, y) (phi / (phi + mu))^phi (mu / (phi + mu))^y
        lp += float(np.sum(special.gammaln(y + phi) - special.gammaln(phi) - self._log_fact
                           + phi * (u[2] - log_phi_mu) + y * (log_i - log_phi_mu)))
        w = mu / (phi + mu)
        d_log_mu = y - (y + phi) * w  # d lp / d log mu, (T,)
        g_rates = d_log_mu @ sens[:, 1, :]  # d lp / d(beta, gamma) through log I
        grad[:2] += g_rates * np.array([beta, gamma])
        d_phi = special.digamma(y + phi) - special.digamma(phi) + (u[2] - log_phi_mu) + 1.0 - (phi + y) / (phi + mu)
        grad[2] += phi * float(np.sum(d_phi))
        return float(lp), grad


def derived(theta: np.ndarray) -> dict[str, np.ndarray]:
    """R0 = beta / gamma and recovery_time = 1 / gamma (days) from theta (..., 3)."""
    return {"R0": theta[..., 0] / theta[..., 1], "recovery_time": 1.0 / theta[..., 1]}


def run_chain(args: tuple[int, int, int, int, np.ndarray, np.ndarray, float]) -> dict:
    """One NUTS chain (seed, warmup, draws) started at an over-dispersed Laplace draw; returns theta draws."""
    chain, seed, warmup, draws, u_map, cov, target_accept = args
    out = laplace_chain(OutbreakPosterior.boarding_school(), u_map, cov, chain=chain, seed=seed, warmup=warmup, draws=draws,
                        target_accept=target_accept)
    return {"theta": np.exp(out.pop("u")), **out}


def summarise(theta: np.ndarray) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """theta (chain, draw, 3) -> (parameters, derived): per quantity mean, sd, mcse_mean, mcse_sd, ess_bulk,
    ess_mean, r_hat, ess_tail, and q05/q50/q95 with mcse_qNN and ess_qNN (`reference_common.summarise_draws`)."""
    return summarise_draws(theta, LABELS, derived(theta), PROBS)


def main() -> None:
    args = reference_parser(__doc__, draws=5000, target_accept=0.9, out=OUT).parse_args()
    start = time.perf_counter()
    model = OutbreakPosterior.boarding_school()
    u_map, cov = laplace_mode(model, np.log([1.7, 0.5, 10.0]), seed=args.seed)
    jobs = [(c, args.seed, args.warmup, args.draws, u_map, cov, args.target_accept) for c in range(args.chains)]
    results = run_chains(run_chain, jobs, args.jobs)
    about = {
        "model": "boarding-school influenza 1978, SIR + negative binomial, issue 12 (see benchmarks/sir_reference.py)",
        "data": "nde_lab/data/files/boarding_school_influenza_1978.csv (in_bed, t = 1..14 days since 1978-01-21)",
        "sampler": "pyro NUTS, dense mass matrix, potential from scipy LSODA forward sensitivities "
                   f"(rtol={model.rtol:g}, atol={model.atol:g})",
    }
    write_reference(args, results, start, about=about, u_map=u_map, labels=LABELS, derived=derived, probs=PROBS,
                    draws=DRAWS, default_out=OUT, root=ROOT)


if __name__ == "__main__":
    main()
