"""`MLP` (a plain regressor f(x)) and `MLPVectorField` (an ODE right-hand side), both with a width parametrisation.

The parametrisation ("standard", "ntk", "mean_field", "mup") sets the initialisation, the forward
multipliers and the per-layer learning-rate factors of every linear layer from one abc-table
(`nde_lab.dynamics.parametrization`, derived in docs/theory.md). "standard" is PyTorch's own
initialisation and no multipliers: the default, bit-identical to the lab before parametrisations.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nde_lab.dynamics.base import VectorField
from nde_lab.dynamics.parametrization import (
    PARAMETRIZATIONS,
    Optimizer,
    Parametrization,
    apply_init_,
    layer_scales,
)
from nde_lab.solvers.registry import check_choice

__all__ = ["ACTIVATIONS", "MLP", "MLPVectorField", "ScaledLinears"]

Activation = Literal["tanh", "relu", "softplus", "elu", "silu", "gelu"]
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus,
    "elu": nn.ELU, "silu": nn.SiLU, "gelu": nn.GELU,
}
_FUNCTIONAL = {"tanh": torch.tanh, "relu": F.relu, "softplus": F.softplus, "elu": F.elu, "silu": F.silu, "gelu": F.gelu,
               "erf": torch.erf}


class ScaledLinears:
    """Mixin: an MLP's linear layers under a parametrisation (multipliers, init, per-layer lr factors)."""

    _linears: tuple[nn.Linear, ...]
    parametrization: str
    base_width: int

    def _parametrize(self, parametrization: str, base_width: int, final_scale: float) -> None:
        check_choice("parametrization", parametrization, PARAMETRIZATIONS, error=ValueError)
        if base_width < 1:
            raise ValueError(f"base_width must be >= 1, got {base_width}.")
        self.parametrization, self.base_width = parametrization, base_width
        self._mults: list[tuple[float, float]] | None = None
        if parametrization == "standard":
            return  # PyTorch's init, no multipliers: bit-identical to the lab's MLPs before parametrisations
        scales = layer_scales(parametrization, self.fan_ins, base_width=base_width)
        for i, (layer, scale) in enumerate(zip(self._linears, scales, strict=True)):
            apply_init_(layer, scale, final_scale=final_scale if i == len(scales) - 1 else 1.0)
        self._mults = [(s.weight_mult, s.bias_mult) for s in scales]

    @property
    def fan_ins(self) -> list[int]:
        return [layer.in_features for layer in self._linears]

    def _mlp(self, features: Tensor) -> Tensor:
        """The layers on `features` (..., fan_ins[0]) with the parametrisation's multipliers."""
        # Functional calls instead of `self.net(features)`: a solve evaluates this thousands of times
        # on tiny tensors, where each nested module call costs as much as the arithmetic.
        *hidden, last = self._linears
        if self._mults is None:
            for layer in hidden:
                features = self._activation(F.linear(features, layer.weight, layer.bias))
            return F.linear(features, last.weight, last.bias)
        *hidden_mults, (aw, ab) = self._mults
        for layer, (mw, mb) in zip(hidden, hidden_mults, strict=True):
            features = self._activation(F.linear(features, layer.weight * mw, layer.bias * mb))
        return F.linear(features, last.weight * aw, last.bias * ab)

    def parameter_groups(self, lr: float, *, optimizer: Optimizer = "sgd") -> list[dict]:
        """Optimizer parameter groups with the abc-table's per-layer learning rates `lr * factor`."""
        scales = layer_scales(self.parametrization, self.fan_ins, base_width=self.base_width, optimizer=optimizer)
        groups = []
        for index, (layer, scale) in enumerate(zip(self._linears, scales, strict=True)):
            groups.append({"params": [layer.weight], "lr": lr * scale.weight_lr, "name": f"layer{index}.weight"})
            groups.append({"params": [layer.bias], "lr": lr * scale.bias_lr, "name": f"layer{index}.bias"})
        return groups

    def preactivations(self, x: Tensor) -> list[Tensor]:
        """Every layer's output before the nonlinearity (the last one is the network's output)."""
        outputs = []
        mults = self._mults or [(1.0, 1.0)] * len(self._linears)
        features = x
        for i, (layer, (mw, mb)) in enumerate(zip(self._linears, mults, strict=True)):
            pre = F.linear(features, layer.weight * mw, layer.bias * mb)
            outputs.append(pre)
            if i < len(self._linears) - 1:
                features = self._activation(pre)
        return outputs


class MLP(ScaledLinears, nn.Module):
    """A plain multilayer perceptron f(x): R^n_in -> R^n_out with `depth` hidden layers of `width` units.

    Args:
        n_in: input dimension d.
        n_out: output dimension.
        width: units per hidden layer n.
        depth: number of hidden layers (>= 1).
        activation: hidden nonlinearity (also "erf", whose infinite-width kernels are closed-form).
        parametrization: width scaling of init, multipliers and learning rates (docs/theory.md).
        base_width: width at which muP equals the Gaussian standard parametrisation.
        final_scale: multiplies the last layer's initial weights (non-standard parametrisations).
    """

    def __init__(
        self,
        n_in: int = 1,
        n_out: int = 1,
        *,
        width: int = 64,
        depth: int = 1,
        activation: Literal["tanh", "relu", "softplus", "elu", "silu", "gelu", "erf"] = "relu",
        parametrization: Parametrization = "standard",
        base_width: int = 64,
        final_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if n_in < 1 or n_out < 1 or width < 1 or depth < 1:
            raise ValueError(f"MLP needs n_in, n_out, width, depth >= 1; got {n_in}, {n_out}, {width}, {depth}.")
        check_choice("activation", activation, _FUNCTIONAL, error=ValueError)
        self.n_in, self.n_out, self.width, self.depth, self.activation = n_in, n_out, width, depth, activation
        self.net = nn.Sequential(*[nn.Linear(n_in if i == 0 else width, width) for i in range(depth)],
                                 nn.Linear(width, n_out))
        self._activation = _FUNCTIONAL[activation]
        self._linears = tuple(self.net)
        self._parametrize(parametrization, base_width, final_scale)

    def forward(self, x: Tensor) -> Tensor:
        """(..., n_in) -> (..., n_out)."""
        return self._mlp(x)


class MLPVectorField(ScaledLinears, VectorField):
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
        parametrization: width scaling of init, multipliers and per-layer learning rates
            (docs/theory.md); "standard" (default) is PyTorch's init without multipliers.
        base_width: width at which muP equals the Gaussian standard parametrisation.
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
        parametrization: Parametrization = "standard",
        base_width: int = 64,
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
        self._parametrize(parametrization, base_width, final_scale)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        features = y**3 if self.input_map == "cube" else y
        if self.time_input:
            features = torch.cat([features, t.to(y).expand(*y.shape[:-1], 1)], dim=-1)
        return self._mlp(features)
