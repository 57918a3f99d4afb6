"""Compare a posterior's draws with a stored long NUTS reference (benchmarks/reference/*_nuts.json).

Used by the recipe-vs-reference tests: the fast posterior (importance-resampled draws) or a NUTS fit
must reproduce the reference's mean, sd and 5% / 95% quantiles of every parameter (and of the derived
quantities the reference stores, where the caller supplies their draws) within Monte Carlo error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nde_lab.query.montecarlo import quantile_mcse

__all__ = ["STATISTICS", "compare_to_reference", "fit_statistics", "recipe_program"]

#: the statistics compared, with the reference's key for their Monte Carlo error
STATISTICS = {"mean": "mcse_mean", "sd": "mcse_sd", "q05": "mcse_q05", "q95": "mcse_q95"}
_PROBS = {"q05": 0.05, "q95": 0.95}


def fit_statistics(x: np.ndarray, ess: float) -> dict[str, tuple[float, float]]:
    """(estimate, Monte Carlo standard error) of mean, sd, q05 and q95 of draws x (any shape, flattened)
    that carry `ess` effective draws.

    mean: sd / sqrt(ess); sd: the delta method on the variance, sd sqrt((kurtosis - 1) / (4 ess));
    quantiles: the order-statistic bracket at p -/+ 1.96 sqrt(p (1 - p) / ess), divided by 3.92
    (`nde_lab.query.montecarlo.quantile_mcse`, ArviZ's rule).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    kurtosis = float(np.mean((x - mean) ** 4) / np.mean((x - mean) ** 2) ** 2)
    out = {"mean": (mean, sd / math.sqrt(ess)), "sd": (sd, sd * math.sqrt(max(kurtosis - 1.0, 0.0) / (4.0 * ess)))}
    for key, p in _PROBS.items():
        est, mcse, _, _ = quantile_mcse(x, p, ess)
        out[key] = (est, mcse)
    return out


def _ess_of(ess: Mapping[str, float] | float, name: str) -> float:
    if isinstance(ess, Mapping):
        if name not in ess:
            raise KeyError(f"no effective sample size for {name!r}; give ess[{name!r}] (got {sorted(ess)}).")
        return float(ess[name])
    return float(ess)


def compare_to_reference(posterior_draws: Mapping[str, np.ndarray], ess: Mapping[str, float] | float,
                         reference_json: str | Path | Mapping[str, Any], *, z: float = 4.0,
                         bias_sd: float = 0.0) -> list[str]:
    """Every (quantity, statistic) where the draws disagree with the reference beyond Monte Carlo error.

    Tolerance rule: for each quantity of the reference (its "parameters", which must all be present in
    `posterior_draws`, and its "derived" quantities, compared where the caller gives their draws) and each
    statistic s in mean, sd, q05, q95,

        |s_fit - s_ref| <= z * sqrt(mcse_fit^2 + mcse_ref^2) + bias_sd * sd_ref,

    with mcse_ref the reference's stored MCSE of s (long NUTS: ArviZ-style ESS-based errors) and mcse_fit
    the fit's own error from its effective size (`fit_statistics`). z = 4 keeps the chance of a false
    failure among ~20 comparisons near 1e-3 while a shift of a few combined errors is caught; `bias_sd`
    (default 0) allows a known deterministic error of the fit (e.g. of its fixed-step solver), in units of
    the reference sd.

    Args:
        posterior_draws: quantity name -> draws (any shape, e.g. (chain, draw); flattened).
        ess: effective sample size of those draws, per quantity name or one number for all. For a fast
            posterior's importance-resampled draws use `nde_lab.prob.diagnostics.resampled_ess(
            ess_importance, n_draws)` (e.g. 4000 draws from proposals with importance ESS 2500 carry
            ~1540); for MCMC draws ArviZ's ESS (the smaller of bulk and tail is a safe choice).
        reference_json: path to the reference JSON, or its loaded content.
        z: number of combined standard errors allowed.
        bias_sd: extra allowance in reference sds (known deterministic error of the fit).

    Returns:
        One line per failure naming the quantity, the statistic, both values, the difference and the
        tolerance; empty when the draws agree.
    """
    ref = reference_json if isinstance(reference_json, Mapping) else json.loads(Path(reference_json).read_text())
    failures = []
    quantities = {**ref["parameters"], **{k: v for k, v in ref.get("derived", {}).items() if k in posterior_draws}}
    for name, row in quantities.items():
        if name not in posterior_draws:
            failures.append(f"{name}: no draws given (the reference has parameters {sorted(ref['parameters'])}).")
            continue
        stats = fit_statistics(posterior_draws[name], _ess_of(ess, name))
        for key, mcse_key in STATISTICS.items():
            est, mcse = stats[key]
            tol = z * math.hypot(mcse, row[mcse_key]) + bias_sd * row["sd"]
            if not abs(est - row[key]) <= tol:
                failures.append(f"{name} {key}: fit {est:.5g} (mcse {mcse:.2g}), reference {row[key]:.5g} "
                                f"(mcse {row[mcse_key]:.2g}), difference {est - row[key]:+.3g} > tolerance {tol:.3g}")
    return failures


def recipe_program(recipe: Path, times: Any, values: Any, state_names: list[str], **solver: Any) -> Any:
    """The `ODEProgram` of a recipe (its priors, likelihood and model), solver options replaced by `solver`,
    bound to the series `values` (time, column) observed at `times`."""
    import yaml

    from nde_lab.prob import Likelihood, ODEProgram, Prior, SeriesData

    cfg = dict(yaml.safe_load(Path(recipe).read_text())["model"]["init_args"]["program"]["init_args"])
    cfg.update(solver)
    cfg["priors"] = {k: Prior(**v) for k, v in cfg["priors"].items()}
    cfg["likelihood"] = Likelihood(**cfg["likelihood"])
    program = ODEProgram(**cfg)
    program.bind(SeriesData(times=times, values=values, state_names=list(state_names)))
    return program
