"""Width parametrisations of an MLP (standard, NTK, mean-field, muP) as one abc-table.

Every linear layer computes ``h = a_W * (w @ x) + a_b * b`` with trainable ``w ~ N(0, s_W^2)``,
``b ~ N(0, s_b^2)`` and a learning rate ``lr * c`` per tensor. The table below gives (a, s, c) for the
input, hidden and output layers as functions of the fan-in ``d`` of the input layer, the width ``n``
and the width ratio ``m = n / base_width`` (Yang & Hu 2021, "Tensor Programs IV", Table 1;
Yang et al. 2022, "Tensor Programs V", Table 3; the muP column is the `mup` package's form, equal to
the Gaussian standard parametrisation at ``n = base_width``). docs/theory.md derives it.

"standard" is the lab's default and keeps PyTorch's own `nn.Linear` initialisation untouched (a
standard-parametrisation init with variance 1/(3 fan_in)); the table's Gaussian row documents its
scaling class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

__all__ = ["PARAMETRIZATIONS", "LayerScale", "Parametrization", "abc_table", "apply_init_", "layer_scales"]

Parametrization = Literal["standard", "ntk", "mean_field", "mup"]
PARAMETRIZATIONS: tuple[str, ...] = ("standard", "ntk", "mean_field", "mup")
Optimizer = Literal["sgd", "adam"]


@dataclass(frozen=True)
class LayerScale:
    """Scaling of one linear layer: forward multipliers, init standard deviations, lr factors."""

    weight_mult: float
    weight_std: float
    weight_lr: float
    bias_mult: float
    bias_std: float
    bias_lr: float


def layer_scales(
    parametrization: Parametrization, fan_ins: Sequence[int], *, base_width: int = 64, optimizer: Optimizer = "sgd"
) -> list[LayerScale]:
    """The (multiplier, init std, lr factor) of each layer of an MLP whose layers have `fan_ins`.

    `fan_ins[0]` is the input dimension d; the others are the width n (every hidden layer has n
    units). For Adam, muP's per-layer rates follow Tensor Programs V Table 3 (hidden 1/m); the other
    parametrisations use factor 1 with Adam (its update ignores gradient scale).
    """
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {list(PARAMETRIZATIONS)}, got {parametrization!r}.")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}.")
    if len(fan_ins) < 2:
        raise ValueError(f"an MLP needs at least an input and an output layer; got fan_ins={list(fan_ins)}.")
    d, n = fan_ins[0], fan_ins[1]
    m = n / base_width
    sgd = optimizer == "sgd"
    scales = []
    for index, fan_in in enumerate(fan_ins):
        kind = "input" if index == 0 else ("output" if index == len(fan_ins) - 1 else "hidden")
        if parametrization == "standard":
            scales.append(LayerScale(1.0, 1 / math.sqrt(fan_in), 1.0, 1.0, 0.0, 1.0))
        elif parametrization == "ntk":
            scales.append(LayerScale(1 / math.sqrt(fan_in), 1.0, 1.0, 1.0, 1.0, 1.0))
        elif parametrization == "mean_field":
            lr = float(n) if sgd else 1.0
            if kind == "output":  # f = (1/n) sum_i a_i phi(h_i) + b/n
                scales.append(LayerScale(1 / n, 1.0, lr, 1 / n, 1.0, lr))
            else:
                scales.append(LayerScale(1 / math.sqrt(fan_in), 1.0, lr, 1.0, 1.0, lr))
        else:  # mup
            if kind == "input":
                lr = m if sgd else 1.0
                scales.append(LayerScale(1.0, 1 / math.sqrt(d), lr, 1.0, 0.0, lr))
            elif kind == "hidden":
                scales.append(LayerScale(1.0, 1 / math.sqrt(fan_in), 1.0 if sgd else 1 / m, 1.0, 0.0, m if sgd else 1.0))
            else:
                scales.append(LayerScale(1 / m, 1 / math.sqrt(base_width), m if sgd else 1.0, 1.0, 0.0, 1.0))
    return scales


def abc_table(*, d: int = 1, n: int = 256, base_width: int = 64, optimizer: Optimizer = "sgd") -> list[dict[str, object]]:
    """The abc-table as rows (parametrization, layer, multiplier, init std, lr factor) for a depth-2 MLP."""
    rows = []
    for name in PARAMETRIZATIONS:
        for layer, s in zip(("input", "hidden", "output"), layer_scales(name, [d, n, n], base_width=base_width, optimizer=optimizer), strict=True):
            rows.append({"parametrization": name, "layer": layer, "multiplier": s.weight_mult,
                         "init_std": s.weight_std, "lr_factor": s.weight_lr})
    return rows


def apply_init_(linear: nn.Linear, scale: LayerScale, *, final_scale: float = 1.0) -> None:
    """Re-draw `linear`'s weight ~ N(0, weight_std^2) (times `final_scale`) and bias ~ N(0, bias_std^2)."""
    with torch.no_grad():
        linear.weight.normal_(0.0, scale.weight_std).mul_(final_scale)
        if linear.bias is not None:
            if scale.bias_std > 0:
                linear.bias.normal_(0.0, scale.bias_std)
            else:
                linear.bias.zero_()
