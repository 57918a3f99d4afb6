"""`MLPVectorField`: a multilayer-perceptron right-hand side, optionally time-dependent and augmented."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nde_lab.dynamics.base import VectorField
from nde_lab.solvers.registry import check_choice

__all__ = ["ACTIVATIONS", "MLPVectorField"]

Activation = Literal["tanh", "relu", "softplus", "elu", "silu", "gelu"]
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus,
    "elu": nn.ELU, "silu": nn.SiLU, "gelu": nn.GELU,
}
_FUNCTIONAL = {"tanh": torch.tanh, "relu": F.relu, "softplus": F.softplus, "elu": F.elu, "silu": F.silu, "gelu": F.gelu}


class MLPVectorField(VectorField):
    """f(t, y) = MLP([phi(y), t]) with `depth` hidden layers of `width` units.

    Args:
        dim: number of observed state coordinates D.
        width: units per hidden layer.
        depth: number of hidden layers (>= 1).
        activation: hidden nonlinearity.
        time_input: feed t as an extra input (non-autonomous field).
        augment_dim: extra zero-initialised latent coordinates (augmented neural ODE).
        input_map: feature map phi applied to y first: "identity" or "cube" (y**3, as in the
            spiral demo of Chen et al. 2018, whose true field is cubic).
        final_scale: multiplies the last layer's initial weights; small values start the
            field near zero, which keeps early solves cheap and stable.
    """

    def __init__(
        self,
        dim: int,
        *,
        width: int = 64,
        depth: int = 2,
        activation: Activation = "tanh",
        time_input: bool = False,
        augment_dim: int = 0,
        input_map: Literal["identity", "cube"] = "identity",
        final_scale: float = 0.1,
    ) -> None:
        super().__init__()
        if dim < 1 or width < 1 or depth < 1 or augment_dim < 0:
            raise ValueError(
                f"MLPVectorField needs dim >= 1, width >= 1, depth >= 1, augment_dim >= 0; "
                f"got dim={dim}, width={width}, depth={depth}, augment_dim={augment_dim}."
            )
        check_choice("activation", activation, ACTIVATIONS, error=ValueError)
        check_choice("input_map", input_map, ["identity", "cube"], error=ValueError)
        self.dim = dim
        self.augment_dim = augment_dim
        self.time_input = time_input
        self.input_map = input_map
        n_in = self.state_dim + (1 if time_input else 0)
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(n_in if i == 0 else width, width), ACTIVATIONS[activation]()]
        last = nn.Linear(width, self.state_dim)
        with torch.no_grad():
            last.weight.mul_(final_scale)
            last.bias.zero_()
        self.net = nn.Sequential(*layers, last)
        self._activation = _FUNCTIONAL[activation]
        self._linears: tuple[nn.Linear, ...] = tuple(self.net[::2])  # the same modules, unregistered view

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        features = y**3 if self.input_map == "cube" else y
        if self.time_input:
            features = torch.cat([features, t.to(y).expand(*y.shape[:-1], 1)], dim=-1)
        # Functional calls instead of `self.net(features)`: a solve evaluates this thousands of times
        # on tiny tensors, where each nested module call costs as much as the arithmetic.
        *hidden, last = self._linears
        for layer in hidden:
            features = self._activation(F.linear(features, layer.weight, layer.bias))
        return F.linear(features, last.weight, last.bias)
