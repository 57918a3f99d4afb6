"""Vector fields and SDE drift/diffusion as plain `nn.Module`s (no Lightning, no solver)."""

from nde_lab.dynamics.base import VectorField
from nde_lab.dynamics.linear import LinearVectorField
from nde_lab.dynamics.mlp import ACTIVATIONS, MLPVectorField

__all__ = ["ACTIVATIONS", "LinearVectorField", "MLPVectorField", "VectorField"]
