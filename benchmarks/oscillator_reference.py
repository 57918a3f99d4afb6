"""Long NUTS reference for the damped oscillator: closed-form positions with Normal noise (issue 12).

The model (recipes/damped_oscillator.yaml), written here independently of `nde_lab.prob` in numpy with
its analytic gradient, using the closed-form solution of the unforced underdamped oscillator
x'' + 2 zeta omega x' + omega^2 x = 0 (no ODE solve at all):

    x(t) = exp(-zeta omega t) (x0 cos(wd t) + (v0 + zeta omega x0) / wd sin(wd t)),  wd = omega sqrt(1 - zeta^2),
    (x, v)(t0 = 0) = (x0, v0);
    omega ~ LogNormal(0, 0.5);  zeta ~ Beta(2, 8) (support (0, 1): always underdamped, so the closed form holds);
    x0 ~ Normal(0, 1);  v0 ~ Normal(0, 1);  sigma ~ HalfNormal(0.5);
    x_obs(t) ~ Normal(x(t), sigma) at the 30 times of nde_lab/data/files/damped_oscillator.csv (synthetic,
    benchmarks/oscillator_data.py: omega 1.5, zeta 0.1, x0 1, v0 0.5, sigma 0.1).

Unconstrained coordinates u = (log omega, logit zeta, x0, v0, log sigma): the bijections
`torch.distributions.biject_to` gives these supports, so u is also the lab's `Unconstrained` (in its order).
Derived quantities: period = 2 pi / wd (time units), decay_rate = zeta omega (per time unit).

Writes benchmarks/reference/damped_oscillator_nuts.json (per quantity: mean, sd, q05/q50/q95 with their
MCSEs, bulk and tail ESS, R-hat) and the draws, theta (chain, draw, 5) as float32 in
benchmarks/reference/damped_oscillator_draws.npz:

    OMP_NUM_THREADS=1 python -m benchmarks.oscillator_reference --chains 4 --warmup 1000 --draws 5000 --jobs 2
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from scipy import special

from benchmarks.reference_common import (
    laplace_chain,
    laplace_mode,
    reference_parser,
    run_chains,
    summarise_draws,
    write_reference,
)

__all__ = ["DERIVED", "DRAWS", "LABELS", "OUT", "PROBS", "OscillatorPosterior", "derived", "run_chain", "summarise"]

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "reference" / "damped_oscillator_nuts.json"
DRAWS = ROOT / "benchmarks" / "reference" / "damped_oscillator_draws.npz"
#: parameters, in the order of u = (log omega, logit zeta, x0, v0, log sigma)
LABELS = ["omega", "zeta", "x0", "v0", "sigma"]
#: derived quantities reported with the parameters
DERIVED = ["period", "decay_rate"]
PROBS = (0.05, 0.5, 0.95)
T0 = 0.0
#: omega ~ LogNormal(OMEGA_LOC, OMEGA_SCALE); zeta ~ Beta(*ZETA_AB); x0, v0 ~ Normal(0, STATE_SCALE);
#: sigma ~ HalfNormal(SIGMA_SCALE)
OMEGA_LOC, OMEGA_SCALE = 0.0, 0.5
ZETA_AB = (2.0, 8.0)
STATE_SCALE = 1.0
SIGMA_SCALE = 0.5
_LOG_2PI = math.log(2 * math.pi)


def position(t: np.ndarray, omega: float, zeta: float, x0: float, v0: float) -> tuple[np.ndarray, np.ndarray]:
    """x(t) (T,) for 0 < zeta < 1 and its gradient (T, 4) in (omega, zeta, x0, v0), t measured from t0."""
    s = math.sqrt(1.0 - zeta * zeta)
    a, wd = zeta * omega, omega * s  # decay rate and damped angular frequency
    e, c, sn = np.exp(-a * t), np.cos(wd * t), np.sin(wd * t)
    b = (v0 + a * x0) / wd
    x = e * (x0 * c + b * sn)
    # x = e^{-a t} (x0 cos + b sin), b = (v0 + a x0) / wd: partials in a and wd, then the chain rule
    dx_da = -t * x + e * sn * x0 / wd
    dx_dwd = e * (-x0 * t * sn - b / wd * sn + b * t * c)
    grad = np.stack([dx_da * zeta + dx_dwd * s,                # d/d omega
                     dx_da * omega - dx_dwd * omega * zeta / s,  # d/d zeta
                     e * (c + a / wd * sn),                     # d/d x0
                     e * sn / wd], axis=-1)                     # d/d v0
    return x, grad


class OscillatorPosterior:
    """log p(y, theta(u)) + log|d theta / d u| and its gradient in u = (log omega, logit zeta, x0, v0, log sigma).

    Args:
        times: (T,) observation times, all after t0 = 0.
        x_obs: (T,) observed positions.
    """

    def __init__(self, times: np.ndarray, x_obs: np.ndarray) -> None:
        self.times = np.asarray(times, dtype=float) - T0
        self.y = np.asarray(x_obs, dtype=float)
        self.n_evals = 0

    @classmethod
    def bundled(cls) -> OscillatorPosterior:
        from nde_lab.data.oscillator import load_damped_oscillator

        series = load_damped_oscillator()
        return cls(series.times, series.values[:, 0])

    @staticmethod
    def to_theta(u: np.ndarray) -> np.ndarray:
        """theta (..., 5) = (omega, zeta, x0, v0, sigma) from u (..., 5)."""
        u = np.asarray(u, dtype=float)
        return np.stack([np.exp(u[..., 0]), special.expit(u[..., 1]), u[..., 2], u[..., 3], np.exp(u[..., 4])], axis=-1)

    def log_density(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        """(log density, gradient (5,)) at unconstrained u (5,); -inf and zeros outside |u| <= 30."""
        self.n_evals += 1
        u = np.asarray(u, dtype=float)
        if not np.isfinite(u).all() or np.abs(u).max() > 30:
            return -math.inf, np.zeros(5)
        omega, zeta, x0, v0, sigma = self.to_theta(u)
        grad = np.zeros(5)
        # LogNormal(m, s) on omega with the Jacobian omega: a Normal(m, s) on u0
        r = (u[0] - OMEGA_LOC) / OMEGA_SCALE
        lp = -0.5 * r * r - math.log(OMEGA_SCALE) - 0.5 * _LOG_2PI
        grad[0] = -r / OMEGA_SCALE
        # Beta(a, b) on zeta with the Jacobian zeta (1 - zeta): a log zeta + b log(1 - zeta) - log B(a, b)
        a, b = ZETA_AB
        log_z, log_1mz = -np.logaddexp(0.0, -u[1]), -np.logaddexp(0.0, u[1])
        lp += a * log_z + b * log_1mz - special.betaln(a, b)
        grad[1] = a * (1.0 - zeta) - b * zeta
        # Normal(0, s) on x0 and v0
        for k in (2, 3):
            lp += -0.5 * (u[k] / STATE_SCALE) ** 2 - math.log(STATE_SCALE) - 0.5 * _LOG_2PI
            grad[k] = -u[k] / STATE_SCALE**2
        # HalfNormal(s) on sigma with the Jacobian sigma
        lp += math.log(2.0) - math.log(SIGMA_SCALE) - 0.5 * _LOG_2PI - 0.5 * (sigma / SIGMA_SCALE) ** 2 + u[4]
        grad[4] = -((sigma / SIGMA_SCALE) ** 2) + 1.0
        # Normal(x(t), sigma) likelihood
        x, dx = position(self.times, omega, zeta, x0, v0)
        res = self.y - x
        n = self.y.size
        lp += float(-0.5 * np.sum(res * res) / sigma**2 - n * u[4] - 0.5 * n * _LOG_2PI)
        g_theta = (res / sigma**2) @ dx  # d lp / d(omega, zeta, x0, v0)
        grad[:4] += g_theta * np.array([omega, zeta * (1.0 - zeta), 1.0, 1.0])
        grad[4] += float(np.sum(res * res) / sigma**2 - n)
        return float(lp), grad


def derived(theta: np.ndarray) -> dict[str, np.ndarray]:
    """period = 2 pi / (omega sqrt(1 - zeta^2)) and decay_rate = zeta omega from theta (..., 5)."""
    omega, zeta = theta[..., 0], theta[..., 1]
    return {"period": 2 * np.pi / (omega * np.sqrt(1.0 - zeta**2)), "decay_rate": zeta * omega}


def run_chain(args: tuple[int, int, int, int, np.ndarray, np.ndarray, float]) -> dict:
    """One NUTS chain (seed, warmup, draws) started at an over-dispersed Laplace draw; returns theta draws."""
    chain, seed, warmup, draws, u_map, cov, target_accept = args
    out = laplace_chain(OscillatorPosterior.bundled(), u_map, cov, chain=chain, seed=seed, warmup=warmup, draws=draws,
                        target_accept=target_accept)
    return {"theta": OscillatorPosterior.to_theta(out.pop("u")), **out}


def summarise(theta: np.ndarray) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """theta (chain, draw, 5) -> (parameters, derived): per quantity mean, sd, mcse_mean, mcse_sd, ess_bulk,
    ess_mean, r_hat, ess_tail, and q05/q50/q95 with mcse_qNN and ess_qNN (`reference_common.summarise_draws`)."""
    return summarise_draws(theta, LABELS, derived(theta), PROBS)


def main() -> None:
    args = reference_parser(__doc__, draws=5000, target_accept=0.9, out=OUT).parse_args()
    start = time.perf_counter()
    model = OscillatorPosterior.bundled()
    # L-BFGS starts near a rough reading of the data (a ~4.2 period, slow decay): the frequency likelihood
    # is multimodal far from it, and the jittered starts keep the best optimum
    u_map, cov = laplace_mode(model, np.array([math.log(1.5), special.logit(0.1), 1.0, 0.0, math.log(0.1)]),
                              seed=args.seed, spread=0.1)
    jobs = [(c, args.seed, args.warmup, args.draws, u_map, cov, args.target_accept) for c in range(args.chains)]
    results = run_chains(run_chain, jobs, args.jobs)
    about = {
        "model": "damped oscillator, closed-form x(t) + Normal noise, issue 12 (see benchmarks/oscillator_reference.py)",
        "data": "nde_lab/data/files/damped_oscillator.csv (synthetic: x at t = 0.4..12.0, benchmarks/oscillator_data.py)",
        "sampler": "pyro NUTS, dense mass matrix, potential from the closed-form solution with its analytic gradient",
    }
    write_reference(args, results, start, about=about, u_map=u_map, labels=LABELS, derived=derived, probs=PROBS,
                    draws=DRAWS, default_out=OUT, root=ROOT)


if __name__ == "__main__":
    main()
