"""The one Monte Carlo result type: an estimate with its error, interval, effective size and provenance.

Every query that reduces draws to a number (`expect`, `prob`, `quantile`, interval ends, predictive
bands, `Dataset.nde.summary`) answers an `xarray.Dataset` built by `mc_result`, so every figure the lab
reports carries the same fields:

    estimate   the Monte Carlo estimate (the statistic's own dims)
    mcse       its Monte Carlo standard error (one name for the error everywhere)
    ci_lower   95% confidence interval of the estimate (Wilson for probabilities, so it is valid
    ci_upper   with few or zero hits; estimate -/+ 1.96 mcse otherwise)
    ess        effective sample size behind the error

and attrs `n_draws`, `converged`, `target_mcse`, `message` and the provenance `seed`, `method`,
`step` (the solver step, 0 for exact transitions or stored draws) and `draws` (the source of the
draws: "simulation", "stored MCMC draws", "importance-resampled draws").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

__all__ = ["MC_ATTRS", "MC_VARIABLES", "Z95", "mc_result", "normal_interval", "wilson_interval"]

#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054
#: Data variables of every Monte Carlo result.
MC_VARIABLES: tuple[str, ...] = ("estimate", "mcse", "ci_lower", "ci_upper", "ess")
#: Attrs of every Monte Carlo result.
MC_ATTRS: tuple[str, ...] = ("n_draws", "converged", "target_mcse", "message", "seed", "method", "step", "draws",
                             "confidence")


def normal_interval(estimate: Any, mcse: Any, z: float = Z95) -> tuple[Any, Any]:
    """estimate -/+ z mcse (array-like in, same type out)."""
    return estimate - z * mcse, estimate + z * mcse


def wilson_interval(hits: Any, n: Any, z: float = Z95) -> tuple[Any, Any]:
    """Wilson score interval of a binomial proportion; valid at 0 and n hits (never of zero width).

    `n` may be an effective number of trials (non-integer) when draws are correlated or resampled.
    """
    hits, n = np.asarray(hits, dtype=float), np.asarray(n, dtype=float)
    p = hits / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def _as_array(value: Any, like: xr.DataArray) -> xr.DataArray:
    if isinstance(value, xr.DataArray):
        return value.astype(np.float64)
    return xr.full_like(like, float(value), dtype=np.float64) if np.ndim(value) == 0 else like.copy(data=np.asarray(value, dtype=np.float64))


def mc_result(
    estimate: xr.DataArray,
    mcse: xr.DataArray | float,
    *,
    n_draws: int,
    ess: xr.DataArray | float,
    converged: bool = True,
    ci: tuple[Any, Any] | None = None,
    target_mcse: float | None = None,
    message: str = "",
    seed: int | None = None,
    method: str = "",
    step: float = 0.0,
    draws: str = "simulation",
    extra: dict[str, xr.DataArray] | None = None,
    attrs: dict[str, Any] | None = None,
) -> xr.Dataset:
    """Build the Monte Carlo result Dataset (fields in the module docstring).

    Args:
        estimate: the estimate, any dims.
        mcse: its Monte Carlo standard error (same dims, or a scalar).
        n_draws: draws the estimate used.
        ess: effective sample size behind `mcse` (same dims, or a scalar).
        converged: False when the requested precision was not reached (see `message`).
        ci: (lower, upper) of the 95% interval; default estimate -/+ 1.96 mcse.
        target_mcse, message, seed, method, step, draws: provenance attrs (see the module docstring).
        extra: further variables (e.g. `sd`, `hits`).
        attrs: further attrs.
    """
    estimate = estimate.astype(np.float64) if isinstance(estimate, xr.DataArray) else xr.DataArray(float(estimate))
    mcse_da = _as_array(mcse, estimate)
    lower, upper = normal_interval(estimate, mcse_da) if ci is None else ci
    data = {
        "estimate": estimate,
        "mcse": mcse_da,
        "ci_lower": _as_array(lower, estimate),
        "ci_upper": _as_array(upper, estimate),
        "ess": _as_array(ess, estimate),
        **(extra or {}),
    }
    out_attrs = {
        "n_draws": int(n_draws), "converged": bool(converged),
        "target_mcse": float(target_mcse) if target_mcse is not None else "none",
        "message": message, "seed": -1 if seed is None else int(seed), "method": method, "step": float(step),
        "draws": draws, "confidence": 0.95, **(attrs or {}),
    }
    return xr.Dataset(data, attrs=out_attrs)
