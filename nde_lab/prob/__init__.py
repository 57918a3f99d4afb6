"""Pyro probabilistic programs: declarative priors and likelihoods, SVI/NUTS/PSIS, ArviZ-layout posteriors."""

from nde_lab.prob.bnode import BatchedMLPField, NeuralODEProgram
from nde_lab.prob.data import SeriesData, TabularData
from nde_lab.prob.diagnostics import ess_bulk, psis, rhat
from nde_lab.prob.distributions import Prior, Truncated, distribution_names, make_distribution
from nde_lab.prob.likelihoods import LIKELIHOOD_FAMILIES, Likelihood
from nde_lab.prob.observation import Column, ObservationModel
from nde_lab.prob.ode_program import ODEProgram
from nde_lab.prob.programs import LinearRegressionProgram, ProbProgram

__all__ = [
    "LIKELIHOOD_FAMILIES",
    "BatchedMLPField",
    "Column",
    "Likelihood",
    "LinearRegressionProgram",
    "NeuralODEProgram",
    "ODEProgram",
    "ObservationModel",
    "Prior",
    "ProbProgram",
    "SeriesData",
    "TabularData",
    "Truncated",
    "distribution_names",
    "ess_bulk",
    "make_distribution",
    "psis",
    "rhat",
]
