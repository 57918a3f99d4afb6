"""Density models: discrete normalizing flows on Pyro's transforms and FFJORD continuous flows."""

from nde_lab.flows.base import (
    DensityModel,
    NonFiniteLossError,
    check_finite_loss,
    standard_normal_log_prob,
)
from nde_lab.flows.cnf import CNF, CNFDynamics
from nde_lab.flows.discrete import DiscreteFlow
from nde_lab.flows.layers import (
    AffineAutoregressive,
    AffineCoupling,
    FlowLayer,
    Permute,
    SplineAutoregressive,
    SplineCoupling,
)

__all__ = [
    "CNF",
    "AffineAutoregressive",
    "AffineCoupling",
    "CNFDynamics",
    "DensityModel",
    "DiscreteFlow",
    "FlowLayer",
    "NonFiniteLossError",
    "Permute",
    "SplineAutoregressive",
    "SplineCoupling",
    "check_finite_loss",
    "standard_normal_log_prob",
]
