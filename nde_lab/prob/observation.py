"""Observation models of mechanistic programs: which combination of the states each data column sees.

A recipe's `observation:` maps every observed column to a `Column`: the sum of some states, times a
scale (a number or the name of an inferred parameter), optionally through a log. Without one, every
state is observed as it is, column k = state k.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from nde_lab.errors import RecipeError

__all__ = ["Column", "ObservationModel"]


@dataclass
class Column:
    """One observed column: transform(scale * sum of `states`).

    Args:
        states: names of the field's states summed into this column (one name: a subset).
        scale: a number or the name of a scalar parameter (e.g. a reporting fraction).
        transform: "identity" or "log" (the column holds log of the scaled sum).
    """

    states: list[str] = field(default_factory=list)
    scale: float | str = 1.0
    transform: Literal["identity", "log"] = "identity"


class ObservationModel:
    """Maps the states (*batch, T, D) to the observed columns (*batch, T, C).

    Args:
        columns: observed column name -> `Column` (or a plain mapping with its keys), in data order.
        states: the field's state names.
    """

    def __init__(self, columns: Mapping[str, Column | Mapping] | None, states: Sequence[str]) -> None:
        self.states = list(states)
        if columns is None:
            self.columns = {s: Column(states=[s]) for s in self.states}
            self.identity = True
            return
        if not isinstance(columns, Mapping) or not columns:
            raise RecipeError(f"observation must map each observed column to {{states: [...], scale, transform}}, got {columns!r}.")
        self.columns = {}
        for name, spec in columns.items():
            key = f"observation.{name}"
            if isinstance(spec, Mapping):
                unknown = sorted(set(spec) - {"states", "scale", "transform"})
                if unknown:
                    raise RecipeError(f"{key}: unknown key(s) {unknown}; a column takes states, scale, transform.")
                spec = Column(**spec)
            if not isinstance(spec, Column):
                raise RecipeError(f"{key}: expected a mapping with states, scale, transform, got {spec!r}.")
            states_ = [spec.states] if isinstance(spec.states, str) else list(spec.states)
            bad = [s for s in states_ if s not in self.states]
            if not states_ or bad:
                raise RecipeError(f"{key}.states: name one or more of the model's states {self.states}, got {spec.states!r}.")
            if spec.transform not in ("identity", "log"):
                raise RecipeError(f"{key}.transform must be 'identity' or 'log', got {spec.transform!r}.")
            if not isinstance(spec.scale, str) and not (isinstance(spec.scale, (int, float)) and math.isfinite(spec.scale)
                                                        and spec.scale > 0):
                raise RecipeError(f"{key}.scale must be a positive number or a parameter name, got {spec.scale!r}.")
            self.columns[name] = Column(states=states_, scale=spec.scale, transform=spec.transform)
        self.identity = False

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    @property
    def scale_parameters(self) -> list[str]:
        """Parameters the observation reads (scales given by name)."""
        return sorted({c.scale for c in self.columns.values() if isinstance(c.scale, str)})

    def __call__(self, z: Tensor, log_z: Tensor | None, params: Mapping[str, Tensor]) -> tuple[Tensor, Tensor | None]:
        """(columns, log columns or None) from states z (*batch, T, D) and, when exact, log z.

        A log-transformed column's value is its log (log_columns is then None for it: the log of a log
        is not a quantity anyone observes)."""
        if self.identity:
            return z, log_z
        values, logs = [], []
        for spec in self.columns.values():
            idx = [self.states.index(s) for s in spec.states]
            scale = params[spec.scale].unsqueeze(-1) if isinstance(spec.scale, str) else torch.as_tensor(spec.scale, dtype=z.dtype)
            total = z[..., idx].sum(-1)
            if log_z is not None:
                log_total = torch.logsumexp(log_z[..., idx], dim=-1) + torch.log(scale)
            else:
                log_total = torch.log((scale * total).clamp_min(torch.finfo(z.dtype).tiny))
            if spec.transform == "log":
                values.append(log_total)
                logs.append(torch.full_like(log_total, math.nan))
            else:
                values.append(scale * total)
                logs.append(log_total)
        out = torch.stack(torch.broadcast_tensors(*values), dim=-1)
        log_out = torch.stack(torch.broadcast_tensors(*logs), dim=-1)
        return out, (None if any(c.transform == "log" for c in self.columns.values()) else log_out)
