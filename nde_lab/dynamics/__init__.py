"""Vector fields and SDE drift/diffusion as plain `nn.Module`s (no Lightning, no solver)."""

from nde_lab.dynamics.base import VectorField
from nde_lab.dynamics.classic import SEIR, SIR, DampedOscillator, LogisticGrowth, LotkaVolterra
from nde_lab.dynamics.linear import LinearVectorField
from nde_lab.dynamics.mechanistic import Input, MechanisticField
from nde_lab.dynamics.mlp import ACTIVATIONS, MLP, MLPVectorField
from nde_lab.dynamics.sde import SDE, NeuralSDE, euler_maruyama_log_prob
from nde_lab.dynamics.sde_latent import LatentSDEModel
from nde_lab.dynamics.sde_parametric import (
    GeometricBrownianMotion,
    OrnsteinUhlenbeck,
    ParametricSDE,
)

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "SDE",
    "SEIR",
    "SIR",
    "DampedOscillator",
    "GeometricBrownianMotion",
    "Input",
    "LatentSDEModel",
    "LinearVectorField",
    "LogisticGrowth",
    "LotkaVolterra",
    "MLPVectorField",
    "MechanisticField",
    "NeuralSDE",
    "OrnsteinUhlenbeck",
    "ParametricSDE",
    "VectorField",
    "euler_maruyama_log_prob",
]
