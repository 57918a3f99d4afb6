"""Convergence and importance-sampling diagnostics with ArviZ's definitions (no ArviZ import).

- `rhat`: rank-normalised split R-hat, max of bulk and folded (tail) versions (Vehtari et al. 2021,
  "Rank-normalization, folding, and localization", Bayesian Analysis 16(2)).
- `ess_bulk`: bulk effective sample size on rank-normalised split chains, Geyer's initial monotone
  sequence (same paper).
- `psis`: Pareto-smoothed importance sampling with the Zhang-Stephens generalised Pareto fit and its
  shape estimate k (Vehtari et al. 2024, "Pareto smoothed importance sampling", JMLR 25(72)).
"""

from __future__ import annotations

import numpy as np
from scipy import fft, special, stats

__all__ = ["ess_bulk", "ess_mean", "pareto_k_threshold", "psis", "resampled_ess", "rhat", "systematic_resample", "tail_check"]


def _split(ary: np.ndarray) -> np.ndarray:
    ary = np.atleast_2d(np.asarray(ary, dtype=float))
    half = ary.shape[1] // 2
    return np.vstack([ary[:, :half], ary[:, ary.shape[1] - half:]])


def _z_scale(ary: np.ndarray) -> np.ndarray:
    rank = stats.rankdata(ary, method="average").reshape(ary.shape)
    return special.ndtri((rank - 0.375) / (ary.size + 0.25))


def _rhat_raw(ary: np.ndarray) -> float:
    n = ary.shape[1]
    between = n * np.var(ary.mean(axis=1), ddof=1)
    within = np.mean(np.var(ary, axis=1, ddof=1))
    return float(np.sqrt((between / within + n - 1) / n))


def rhat(draws: np.ndarray) -> float:
    """Rank-normalised split R-hat of draws shaped (chain, draw); NaN with < 2 chains or < 4 draws."""
    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 2 or draws.shape[0] < 2 or draws.shape[1] < 4 or not np.isfinite(draws).all():
        return float("nan")
    split = _split(draws)
    bulk = _rhat_raw(_z_scale(split))
    tail = _rhat_raw(_z_scale(np.abs(split - np.median(split))))
    return max(bulk, tail)


def _autocov(ary: np.ndarray) -> np.ndarray:
    n = ary.shape[1]
    m = fft.next_fast_len(2 * n)
    centred = ary - ary.mean(axis=1, keepdims=True)
    f = np.fft.rfft(centred, n=m, axis=1)
    return np.fft.irfft(f * np.conjugate(f), n=m, axis=1)[:, :n] / n


def _ess(ary: np.ndarray) -> float:
    n_chain, n_draw = ary.shape
    if np.max(ary) - np.min(ary) < np.finfo(float).resolution:
        return float(ary.size)
    acov = _autocov(ary)
    mean_var = np.mean(acov[:, 0]) * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus += np.var(ary.mean(axis=1), ddof=1)
    rho = np.zeros(n_draw)
    rho_even, rho_odd = 1.0, 1.0 - (mean_var - np.mean(acov[:, 1])) / var_plus
    rho[0], rho[1] = rho_even, rho_odd
    t = 1
    while t < n_draw - 3 and rho_even + rho_odd > 0.0:  # Geyer's initial positive sequence
        rho_even = 1.0 - (mean_var - np.mean(acov[:, t + 1])) / var_plus
        rho_odd = 1.0 - (mean_var - np.mean(acov[:, t + 2])) / var_plus
        if rho_even + rho_odd >= 0:
            rho[t + 1], rho[t + 2] = rho_even, rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho[max_t + 1] = rho_even
    t = 1
    while t <= max_t - 2:  # Geyer's initial monotone sequence
        if rho[t + 1] + rho[t + 2] > rho[t - 1] + rho[t]:
            rho[t + 1] = rho[t + 2] = (rho[t - 1] + rho[t]) / 2.0
        t += 2
    total = n_chain * n_draw
    tau = -1.0 + 2.0 * np.sum(rho[: max_t + 1]) + np.sum(rho[max_t + 1: max_t + 2])
    tau = max(tau, 1 / np.log10(total))
    return float(total / tau)


def ess_bulk(draws: np.ndarray) -> float:
    """Bulk ESS of draws shaped (chain, draw) (rank-normalised, split); NaN with < 4 draws."""
    draws = np.atleast_2d(np.asarray(draws, dtype=float))
    if draws.shape[1] < 4 or not np.isfinite(draws).all():
        return float("nan")
    return _ess(_z_scale(_split(draws)))


def ess_mean(draws: np.ndarray) -> float:
    """ESS for the mean of draws shaped (chain, draw) (ArviZ's method="mean": split chains, no ranks).

    The Monte Carlo standard error of the posterior mean is sd / sqrt(ess_mean).
    """
    draws = np.atleast_2d(np.asarray(draws, dtype=float))
    if draws.shape[1] < 4 or not np.isfinite(draws).all():
        return float("nan")
    return _ess(_split(draws))


def _gpdfit(x: np.ndarray) -> tuple[float, float]:
    """Zhang-Stephens empirical-Bayes fit of a generalised Pareto to sorted exceedances x."""
    n = len(x)
    m = 30 + int(n**0.5)
    b = 1 - np.sqrt(m / (np.arange(1, m + 1, dtype=float) - 0.5))
    b /= 3 * x[int(n / 4 + 0.5) - 1]
    b += 1 / x[-1]
    k = np.log1p(-b[:, None] * x).mean(axis=1)
    len_scale = n * (np.log(-(b / k)) - k - 1)
    w = 1 / np.exp(len_scale - len_scale[:, None]).sum(axis=1)
    keep = w >= 10 * np.finfo(float).eps
    w, b = w[keep], b[keep]
    w /= w.sum()
    b_post = np.sum(b * w)
    k_post = np.log1p(-b_post * x).mean()
    sigma = -k_post / b_post
    k_post = (n * k_post + 10 * 0.5) / (n + 10)
    return float(k_post), float(sigma)


def psis(log_weights: np.ndarray, *, reff: float = 1.0) -> tuple[np.ndarray, float]:
    """Pareto-smooth 1-D log importance weights.

    Returns:
        (normalised smoothed log weights of the same shape, Pareto shape k). k < 0.7 means the
        importance-sampling estimates are reliable; k = inf when the tail is too short to fit.
    """
    x = np.array(log_weights, dtype=float).ravel()
    if not np.isfinite(x).all():
        raise ValueError("psis: log weights must be finite (drop draws whose target density is -inf first).")
    n = x.size
    cutoff_ind = -int(np.ceil(min(n / 5.0, 3 * (n / reff) ** 0.5))) - 1
    x -= x.max()
    order = np.argsort(x)
    xcut = max(x[order[cutoff_ind]], np.log(np.finfo(float).tiny))
    tail = np.where(x > xcut)[0]
    k = float("inf")
    if len(tail) > 4:
        tail_order = np.argsort(x[tail])
        exceed = np.exp(x[tail]) - np.exp(xcut)
        k, sigma = _gpdfit(exceed[tail_order])
        if np.isfinite(k) and sigma > 0:
            p = np.arange(0.5, len(tail)) / len(tail)
            gp = sigma * (-np.log1p(-p) if abs(k) < np.finfo(float).eps else np.expm1(-k * np.log1p(-p)) / k)
            x[tail[tail_order]] = np.log(gp + np.exp(xcut))
            x[x > 0] = 0
    x -= special.logsumexp(x)
    return x.reshape(np.shape(log_weights)), k


def systematic_resample(log_weights: np.ndarray, n: int, *, rng: np.random.Generator) -> np.ndarray:
    """Indices of `n` draws by systematic resampling with normalised `log_weights` (sorted ascending)."""
    w = np.exp(np.asarray(log_weights, dtype=float) - special.logsumexp(log_weights))
    cdf = np.cumsum(w)
    cdf[-1] = 1.0
    u = (rng.random() + np.arange(n)) / n
    return np.searchsorted(cdf, u, side="left")


def resampled_ess(ess_importance: float, n_draws: int) -> float:
    """Effective size of `n_draws` resampled from weighted proposals whose importance ESS is `ess_importance`.

    Resampling adds its own noise to the importance estimate: var ~ sd^2 (1/ESS_importance + 1/n), so the
    draws carry 1 / (1/ESS_importance + 1/n) effective draws, never more than either.
    """
    return 1.0 / (1.0 / float(ess_importance) + 1.0 / float(n_draws))


def pareto_k_threshold(n_proposals: int) -> float:
    """The sample-size-aware Pareto k threshold min(1 - 1/log10(S), 0.7) (Vehtari et al. 2024, section 3.2.4).

    Below it, PSIS estimates with S draws have a reliable pre-asymptotic error; with few draws the
    threshold is stricter (0.5 at S = 100, 0.67 at S = 1000, 0.7 from S ~ 2200).
    """
    return float(min(1.0 - 1.0 / np.log10(max(int(n_proposals), 11)), 0.7))


def tail_check(values: np.ndarray, log_weights: np.ndarray, *, tail: float = 0.01, max_ratio: float = 2.0,
               min_tail_ess: float = 20.0) -> list[str]:
    """Check that a proposal covers the target's tails, per column of `values` (S, P), both tails.

    For each parameter and tail, the target's mass beyond the proposal's `tail` quantile is estimated
    with the normalised importance weights. A proposal whose tail is too light shows it as target mass
    several times the proposal's own (`max_ratio`), or as a tail mass carried by too few effective
    draws (`min_tail_ess`: Kish ESS of the weights inside the tail, which a cut-off tail starves).

    Returns:
        One line per failing (parameter column, tail), empty when every tail passes.
    """
    values = np.asarray(values, dtype=float).reshape(len(log_weights), -1)
    lw = np.asarray(log_weights, dtype=float)
    w = np.exp(lw - special.logsumexp(lw))
    problems = []
    for j in range(values.shape[1]):
        x = values[:, j]
        for side, inside in (("lower", x <= np.quantile(x, tail)), ("upper", x >= np.quantile(x, 1 - tail))):
            wt = w[inside]
            mass = float(wt.sum())
            ess = float(mass**2 / np.sum(wt**2)) if mass > 0 else 0.0
            ratio = mass / tail
            if ratio > max_ratio or (ratio > 1.0 and ess < min_tail_ess):
                problems.append(f"column {j} {side} tail: target mass {ratio:.1f}x the proposal's {tail:g}, "
                                f"carried by {ess:.0f} effective draws")
    return problems
