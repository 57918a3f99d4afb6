"""Shared helpers of the theory probes: resolving the network of a run or task, functional calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from nde_lab.dynamics.base import VectorField

__all__ = ["as_function", "flat_params", "lr_factors", "multipliers", "resolve_network", "training_set", "unflatten"]


def resolve_network(obj: Any, module: str | None = None) -> nn.Module:
    """The network to probe: `obj` itself (an `nn.Module`), or inside a task or an opened `Run`.

    `module` is a dotted attribute path inside the task (e.g. "vector_field"); by default the task's
    `network`, else its only child module that holds parameters.
    """
    if hasattr(obj, "tree") and hasattr(obj, "model"):  # an opened Run: restore the trained task
        obj = obj.model
    if not isinstance(obj, nn.Module):
        raise TypeError(f"expected an nn.Module, a LabTask or an opened Run, got {type(obj).__name__}.")
    if module is not None:
        for name in module.split("."):
            if not hasattr(obj, name):
                raise ValueError(f"module={module!r}: {type(obj).__name__} has no attribute {name!r}.")
            obj = getattr(obj, name)
        return obj
    from nde_lab.train.base import LabTask

    if not isinstance(obj, LabTask):
        return obj
    if isinstance(getattr(obj, "network", None), nn.Module):
        return obj.network
    children = [(n, c) for n, c in obj.named_children() if any(True for _ in c.parameters())]
    if len(children) != 1:
        raise ValueError(f"{type(obj).__name__} has modules {[n for n, _ in children]}; name one with module=...")
    return children[0][1]


def as_function(net: nn.Module, *, time: float = 0.0) -> Callable[[dict[str, Tensor], Tensor], Tensor]:
    """f(params, x) -> output for ONE input x (shape (d,)) -> (o,), through `torch.func.functional_call`.

    A `VectorField` is evaluated as the field at time `time`: x -> f(time, x).
    """
    if isinstance(net, VectorField):
        t = torch.tensor(time)

        def field(params: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(net, params, (t.to(x), x.unsqueeze(0))).squeeze(0)

        return field

    def plain(params: dict[str, Tensor], x: Tensor) -> Tensor:
        out = functional_call(net, params, (x.unsqueeze(0),)).squeeze(0)
        return out.reshape(-1)

    return plain


def flat_params(net: nn.Module) -> dict[str, Tensor]:
    """The trainable parameters, detached (the point at which kernels and curvature are taken)."""
    return {k: v.detach() for k, v in net.named_parameters() if v.requires_grad}


def unflatten(vector: Tensor, like: dict[str, Tensor]) -> dict[str, Tensor]:
    """Split a flat vector into tensors shaped like `like` (same order)."""
    out, start = {}, 0
    for name, p in like.items():
        out[name] = vector[start:start + p.numel()].view_as(p)
        start += p.numel()
    return out


def training_set(obj: Any) -> tuple[Tensor, Tensor]:
    """The full training set (x, y) of an opened Run (its recipe's DataModule, rebuilt by jsonargparse)
    or of a DataModule with `train_tensors()` (e.g. `nde_lab.data.RegressionDataModule`)."""
    if hasattr(obj, "tree") and hasattr(obj, "config"):
        import lightning as L
        from jsonargparse import ArgumentParser

        parser = ArgumentParser(exit_on_error=False)
        parser.add_subclass_arguments(L.LightningDataModule, "data", required=True)
        parsed = parser.parse_object({"data": obj.config["data"]})
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
        obj = instantiate(parsed).data
    if not hasattr(obj, "train_tensors"):
        raise ValueError(f"{type(obj).__name__} does not serve a full training set (train_tensors()); pass x, y.")
    return obj.train_tensors()


def lr_factors(net: nn.Module, *, optimizer: str = "sgd") -> dict[str, float]:
    """Per-parameter learning-rate factors of the network's parametrisation (1 for a plain module)."""
    factors = {name: 1.0 for name, _ in net.named_parameters()}
    if hasattr(net, "parameter_groups"):
        by_id = {id(p): g["lr"] for g in net.parameter_groups(1.0, optimizer=optimizer) for p in g["params"]}
        factors = {name: by_id.get(id(p), 1.0) for name, p in net.named_parameters()}
    return factors


def multipliers(net: nn.Module) -> dict[str, float]:
    """Forward multiplier of each parameter tensor (the effective weight is multiplier * tensor)."""
    mults = {name: 1.0 for name, _ in net.named_parameters()}
    linears, layer_mults = getattr(net, "_linears", None), getattr(net, "_mults", None)
    if linears is not None and layer_mults is not None:
        by_id = {}
        for layer, (mw, mb) in zip(linears, layer_mults, strict=True):
            by_id[id(layer.weight)], by_id[id(layer.bias)] = mw, mb
        mults = {name: by_id.get(id(p), 1.0) for name, p in net.named_parameters()}
    return mults
