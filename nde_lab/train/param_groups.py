"""Optimizers whose parameter groups follow the width parametrisation of the lab's MLPs.

A task that owns a parametrised `nde_lab.dynamics.MLP`/`MLPVectorField` (anywhere among its submodules)
builds its optimizer with `build_optimizer(factory, task)`: every layer tensor of such a network gets
its own group with the abc-table's learning rate `lr * factor` (`ScaledLinears.parameter_groups`), all
other parameters share one group at the factory's `lr`. When every network is "standard", the factory
gets `module.parameters()` exactly as before (bit-identical optimisation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nde_lab.dynamics.mlp import ScaledLinears

__all__ = ["ADAM_LIKE", "build_optimizer", "optimizer_kind", "parametrised_networks"]

#: optimizers whose update ignores the gradient's scale: muP's "adam" column of the abc-table
ADAM_LIKE: tuple[type[torch.optim.Optimizer], ...] = (
    torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam,
)


def optimizer_kind(optimizer: torch.optim.Optimizer) -> str:
    """"adam" for Adam-like optimizers, else "sgd" (the abc-table's two learning-rate columns)."""
    return "adam" if isinstance(optimizer, ADAM_LIKE) else "sgd"


def parametrised_networks(module: nn.Module) -> list[nn.Module]:
    """The lab MLPs among `module`'s submodules (itself included) whose parametrisation is not "standard"."""
    return [m for m in module.modules() if isinstance(m, ScaledLinears) and m.parametrization != "standard"]


def build_optimizer(factory: Callable[..., torch.optim.Optimizer], module: nn.Module) -> torch.optim.Optimizer:
    """`factory(params)` with the abc-table's per-layer learning rates for `module`'s parametrised MLPs.

    Args:
        factory: builds the optimizer from parameters or parameter groups (a recipe's `OptimizerCallable`,
            a class such as `torch.optim.Adam`, or a `functools.partial`); its `lr` is the base rate.
        module: the task (or network) whose trainable parameters are optimised.

    Raises:
        ValueError: the optimizer cannot hold several parameter groups (L-BFGS) but a network needs them.
    """
    nets = parametrised_networks(module)
    if not nets:
        return factory(module.parameters())
    groups: list[dict[str, Any]] = []
    owned: set[int] = set()
    for net in nets:
        for group in net.parameter_groups(1.0):
            params = [p for p in group["params"] if p.requires_grad and id(p) not in owned]
            owned.update(id(p) for p in params)
            if params:
                groups.append({"params": params, "name": group["name"], "network": net})
    rest = [p for p in module.parameters() if p.requires_grad and id(p) not in owned]
    if rest:
        groups.append({"params": rest, "name": "other"})
    try:
        optimizer = factory([{k: v for k, v in g.items() if k != "network"} for g in groups])
    except ValueError as error:
        raise ValueError(f"{getattr(factory, '__name__', factory)!s} cannot use per-layer learning rates, which "
                         f"parametrization={nets[0].parametrization!r} needs ({error}); use SGD or Adam, or "
                         f"parametrization='standard'.") from error
    kind = optimizer_kind(optimizer)
    factors: dict[tuple[int, str], float] = {}
    for net in nets:
        for group in net.parameter_groups(1.0, optimizer=kind):
            factors[(id(net), group["name"])] = group["lr"]
    for built, spec in zip(optimizer.param_groups, groups, strict=True):
        if "network" in spec:
            built["lr"] = built["lr"] * factors[(id(spec["network"]), spec["name"])]
    return optimizer
