"""Probabilistic queries over runs: expectations, probabilities and intervals with Monte Carlo error."""

from nde_lab.query.accessor import NdeAccessor
from nde_lab.query.montecarlo import Sampler, expect, expect_draws, interval, prob

__all__ = ["NdeAccessor", "Sampler", "expect", "expect_draws", "interval", "prob"]
