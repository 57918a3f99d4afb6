"""Monte Carlo queries with their error: expectations, probabilities and credible intervals.

Every answer carries its Monte Carlo standard error (`mcse`) and the number of draws (`n_draws`),
and, for correlated draws (MCMC), the effective sample size (`ess`) behind the error. A caller
gives either a number of draws or a target standard error; draws are made in batches and reduced
on the fly (Welford's streaming mean and variance), so memory stays bounded by one batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import xarray as xr

__all__ = ["Sampler", "expect", "expect_draws", "interval", "prob"]

#: draws(n, seed) -> Dataset with a leading "sample" dimension of length n.
Sampler = Callable[[int, int], xr.Dataset]
Statistic = Callable[[xr.Dataset], xr.DataArray]

_Z95 = 1.959963984540054


def _as_sample_array(value: xr.DataArray | np.ndarray, n: int) -> xr.DataArray:
    array = value if isinstance(value, xr.DataArray) else xr.DataArray(np.asarray(value), dims=["sample", *[f"dim_{i}" for i in range(np.ndim(value) - 1)]])
    if "sample" not in array.dims or array.sizes["sample"] != n:
        raise ValueError(
            f"the statistic must return one value per draw along a 'sample' dimension of length {n}; "
            f"got dims {dict(array.sizes)}. Reduce over other dimensions inside the function, not over 'sample'."
        )
    return array.astype(np.float64).transpose("sample", ...)


def expect(
    draws: Sampler,
    fn: Statistic,
    *,
    n: int | None = None,
    target_mcse: float | None = None,
    batch: int = 1000,
    max_draws: int = 1_000_000,
    seed: int = 0,
) -> xr.Dataset:
    """E[fn(X)] over independent draws X, with its Monte Carlo standard error.

    Main arguments:
        draws: a sampler `draws(n, seed)` returning a Dataset with dim "sample" (e.g. `run.sample`).
        fn: maps a batch of draws to a DataArray with dim "sample" (and any other dims).
        n: number of draws; or
        target_mcse: draw until every component's MCSE is at most this (at least `batch` draws).

    Other arguments:
        batch: draws per batch (memory is bounded by one batch); batch b uses seed `seed + b`.
        max_draws: give up (with the estimate so far, attrs `converged=False`) past this many.

    Returns:
        Dataset with `estimate` and `mcse` (fn's non-sample dims), attrs `n_draws`, `converged`.
    """
    if (n is None) == (target_mcse is None):
        raise ValueError("give exactly one of n (a number of draws) or target_mcse (a precision).")
    if n is not None and n < 2:
        raise ValueError(f"n must be >= 2 draws, got {n}.")
    if target_mcse is not None and not target_mcse > 0:
        raise ValueError(f"target_mcse must be positive, got {target_mcse}.")
    if batch < 2:
        raise ValueError(f"batch must be >= 2, got {batch}.")
    count, mean, m2, b = 0, None, None, 0
    while True:
        size = batch if n is None else min(batch, n - count)
        values = _as_sample_array(fn(draws(size, seed + b)), size)
        b += 1
        batch_mean = values.mean("sample")
        batch_m2 = ((values - batch_mean) ** 2).sum("sample")
        if mean is None:
            count, mean, m2 = size, batch_mean, batch_m2
        else:  # Chan et al.'s parallel update of mean and sum of squares
            delta = batch_mean - mean
            total = count + size
            mean = mean + delta * size / total
            m2 = m2 + batch_m2 + delta**2 * count * size / total
            count = total
        mcse = np.sqrt(m2 / (count - 1) / count)
        if n is not None and count >= n:
            converged = True
            break
        if target_mcse is not None and bool((mcse <= target_mcse).all()):
            converged = True
            break
        if count >= max_draws:
            converged = False
            break
    return xr.Dataset(
        {"estimate": mean, "mcse": mcse},
        attrs={"n_draws": count, "converged": converged, "target_mcse": target_mcse if target_mcse else "none",
               "method": "independent draws; mcse = sd / sqrt(n)"},
    )


def prob(draws: Sampler, event: Callable[[xr.Dataset], xr.DataArray], **kwargs) -> xr.Dataset:
    """P(event) = E[1{event(X)}], with MCSE sqrt(p (1 - p) / n); keywords as in `expect`."""
    return expect(draws, lambda ds: event(ds).astype(np.float64), **kwargs)


def expect_draws(samples: xr.Dataset, fn: Statistic) -> xr.Dataset:
    """E[fn(theta)] over stored MCMC draws with dims (chain, draw): MCSE from the ESS of the mean.

    For independent draws (one chain of iid draws, e.g. resampled importance draws) the ESS is
    close to the number of draws and the MCSE reduces to sd / sqrt(n).
    """
    from nde_lab.prob.diagnostics import ess_mean

    if "chain" not in samples.dims or "draw" not in samples.dims:
        raise ValueError(f"stored draws need dims ('chain', 'draw'); got {dict(samples.sizes)}.")
    stacked = samples.stack(sample=("chain", "draw")).transpose("sample", ...)
    n = stacked.sizes["sample"]
    values = _as_sample_array(fn(stacked), n).unstack("sample").transpose("chain", "draw", ...)
    flat = values.values.reshape(values.sizes["chain"], values.sizes["draw"], -1)
    ess = np.array([ess_mean(flat[:, :, k]) for k in range(flat.shape[-1])])
    other_dims = [d for d in values.dims if d not in ("chain", "draw")]
    shape = [values.sizes[d] for d in other_dims]
    mean = values.mean(("chain", "draw"))
    sd = values.std(("chain", "draw"), ddof=1)
    ess_da = xr.DataArray(ess.reshape(shape), dims=other_dims, coords={d: mean[d] for d in other_dims if d in mean.coords})
    return xr.Dataset(
        {"estimate": mean, "mcse": sd / np.sqrt(ess_da), "ess": ess_da},
        attrs={"n_draws": int(n), "method": "MCMC draws; mcse = sd / sqrt(ess_mean) (ArviZ's definition)"},
    )


def interval(values: np.ndarray, level: float = 0.9) -> dict[str, float]:
    """Equal-tailed credible interval of 1-D draws with the MC error of each end.

    The error of a quantile q_p is distribution-free: the order statistics at ranks
    n p -/+ 1.96 sqrt(n p (1 - p)) bracket q_p with 95% probability, so se ~ (upper - lower) / 3.92.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = x.size
    if n < 10:
        raise ValueError(f"an interval needs at least 10 draws, got {n}.")
    out: dict[str, float] = {"level": level, "n_draws": n}
    for name, p in (("lower", (1 - level) / 2), ("upper", 1 - (1 - level) / 2)):
        half = _Z95 * math.sqrt(n * p * (1 - p))
        lo = int(np.clip(math.floor(n * p - half), 0, n - 1))
        hi = int(np.clip(math.ceil(n * p + half), 0, n - 1))
        out[name] = float(np.quantile(x, p))
        out[f"{name}_mcse"] = float((x[hi] - x[lo]) / (2 * _Z95))
    return out
