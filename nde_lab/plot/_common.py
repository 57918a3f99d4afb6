"""Shared helpers of the plots: figures without pyplot, units in labels, quantile bands."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["BAND_LEVELS", "axes_grid", "band", "label", "new_figure"]

#: credible/predictive bands drawn around a central line, widest first
BAND_LEVELS = (0.9, 0.5)


def new_figure(width: float = 6.4, height: float = 4.0) -> Figure:
    """A figure not registered with pyplot (no GUI, no global state; `fig.savefig` uses Agg)."""
    return Figure(figsize=(width, height), layout="constrained")


def axes_grid(fig: Figure, n: int, *, ncols: int | None = None) -> list[Axes]:
    """`n` axes in a near-square grid on `fig`."""
    ncols = ncols or min(n, 3)
    nrows = int(np.ceil(n / ncols))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for extra in axes[n:]:
        fig.delaxes(extra)
    return axes[:n]


def label(var: xr.DataArray | xr.Variable, fallback: str) -> str:
    """Axis label: the variable's long name (or `fallback`) with its units."""
    attrs: dict[str, Any] = dict(var.attrs)
    name = str(attrs.get("long_name") or fallback)
    units = attrs.get("units")
    return f"{name} [{units}]" if units not in (None, "", "1") else name


def band(draws: xr.DataArray, dims: list[str], level: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal-tailed `level` band of `draws` over `dims`: (lower, upper) arrays of the remaining dims."""
    q = draws.quantile([(1 - level) / 2, (1 + level) / 2], dim=dims)
    return q.isel(quantile=0).values, q.isel(quantile=1).values
