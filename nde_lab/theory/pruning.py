"""Magnitude-pruning robustness: loss and MAE of a network after global L1 pruning of its weights."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn
from torch.nn.utils import prune

from nde_lab.theory._common import resolve_network
from nde_lab.theory.curvature import half_mse

__all__ = ["DEFAULT_AMOUNTS", "pruning_curve"]

DEFAULT_AMOUNTS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def pruning_curve(obj: Any, x: Tensor, y: Tensor, *, amounts: Sequence[float] = DEFAULT_AMOUNTS,
                  module: str | None = None) -> xr.Dataset:
    """`loss` (half MSE) and `mae` along `amount` (fraction of weights zeroed, global magnitude pruning
    of every `nn.Linear` weight with `torch.nn.utils.prune.global_unstructured`); the network is copied."""
    if any(not 0.0 <= a < 1.0 for a in amounts):
        raise ValueError(f"amounts must lie in [0, 1), got {list(amounts)}.")
    net = resolve_network(obj, module)
    losses, maes, kept = [], [], []
    for amount in amounts:
        pruned = copy.deepcopy(net)
        targets = [(m, "weight") for m in pruned.modules() if isinstance(m, nn.Linear)]
        if amount > 0:
            prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=float(amount))
        total = sum(m.weight.numel() for m, _ in targets)
        kept.append(sum(int((m.weight != 0).sum()) for m, _ in targets) / total)
        with torch.no_grad():
            predicted = pruned(x)
        losses.append(float(half_mse(predicted, y)))
        maes.append(float((predicted - y).abs().mean()))
    ds = xr.Dataset({"loss": ("amount", np.array(losses)), "mae": ("amount", np.array(maes)),
                     "fraction_kept": ("amount", np.array(kept))}, coords={"amount": np.asarray(amounts, float)})
    ds.attrs["description"] = "global magnitude (L1) pruning of the linear weights: loss and MAE on the data"
    return ds
