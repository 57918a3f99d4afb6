"""Observed data handed to a probabilistic program: a time series or a regression table, validated."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from nde_lab.errors import DataError

__all__ = ["SeriesData", "TabularData"]


def _tensor(x: object, *, what: str, source: str) -> Tensor:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{source}: {what} is not numeric ({err}).") from None
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[:3].tolist()
        raise DataError(
            f"{source}: {what} holds NaN or infinite values (first at index {bad}); drop or impute those "
            "rows before inference -- the likelihood has no missing-data model."
        )
    return torch.as_tensor(arr.copy(), dtype=torch.float64)  # programs cast to their working precision


@dataclass
class SeriesData:
    """Observations y(t_i) of a dynamical system.

    Attributes:
        times: (T,) strictly increasing observation times; the model's initial state lives at times[0].
        values: (T, D) observed states.
        state_names: D names of the observed coordinates.
        time_units, value_units: free-text units stored in attrs.
        source: where the data came from (used in error messages).
    """

    times: Tensor
    values: Tensor
    state_names: list[str]
    time_units: str = ""
    value_units: str = ""
    source: str = "data"
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.times = _tensor(self.times, what="times", source=self.source)
        self.values = _tensor(self.values, what="values", source=self.source)
        if self.times.ndim != 1 or self.times.numel() < 2:
            raise DataError(f"{self.source}: times must have shape (T,) with T >= 2, got {tuple(self.times.shape)}.")
        if self.values.ndim != 2 or self.values.shape[0] != self.times.shape[0]:
            raise DataError(
                f"{self.source}: values must have shape (T, D) = ({self.times.shape[0]}, D) to match times, "
                f"got {tuple(self.values.shape)}."
            )
        if not bool((self.times[1:] > self.times[:-1]).all()):
            raise DataError(f"{self.source}: times must be strictly increasing.")
        if len(self.state_names) != self.values.shape[1]:
            raise DataError(
                f"{self.source}: {len(self.state_names)} state names {self.state_names} for "
                f"{self.values.shape[1]} columns of values."
            )


@dataclass
class TabularData:
    """A regression table: covariates X (N, K) and a response y (N,)."""

    x: Tensor
    y: Tensor
    feature_names: list[str]
    target_name: str = "y"
    source: str = "data"
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.x = _tensor(self.x, what="covariates", source=self.source)
        self.y = _tensor(self.y, what="response", source=self.source)
        if self.x.ndim != 2 or self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise DataError(
                f"{self.source}: expected covariates (N, K) and response (N,) with the same N, got "
                f"{tuple(self.x.shape)} and {tuple(self.y.shape)}."
            )
        if len(self.feature_names) != self.x.shape[1]:
            raise DataError(f"{self.source}: {len(self.feature_names)} feature names for {self.x.shape[1]} columns.")
