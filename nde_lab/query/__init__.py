"""Probabilistic queries over runs: expectations, probabilities, quantiles and intervals with Monte Carlo error."""

from nde_lab.query.accessor import NdeAccessor
from nde_lab.query.montecarlo import (
    MIN_HITS,
    DrawSource,
    Sampler,
    expect,
    expect_draws,
    interval,
    prob,
    quantile,
    quantile_mcse,
)
from nde_lab.query.result import MC_ATTRS, MC_VARIABLES, mc_result, wilson_interval

__all__ = [
    "MC_ATTRS", "MC_VARIABLES", "MIN_HITS", "DrawSource", "NdeAccessor", "Sampler", "expect", "expect_draws",
    "interval", "mc_result", "prob", "quantile", "quantile_mcse", "wilson_interval",
]
