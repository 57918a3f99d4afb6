"""Conclusions across a grid (a sweep record or a stack of runs): slopes over width, the muP optimum shift,
the edge-of-stability summary. Inputs are DataArrays with dims named `width`, `lr`, `seed`, ..."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["edge_of_stability_summary", "gather", "optimum_shift", "width_slopes"]


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    a = np.vstack([x, np.ones_like(x)]).T
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    resid = y - a @ coef
    dof = max(len(x) - 2, 1)
    cov = np.linalg.inv(a.T @ a) * (resid @ resid) / dof
    return float(coef[0]), float(np.sqrt(cov[0, 0]))


def width_slopes(values: xr.DataArray, *, dim: str = "width", average: tuple[str, ...] = ("seed",)) -> xr.Dataset:
    """Log-log slope d log(value) / d log(width), the values first averaged over `average` dims present.

    Returns `slope` and its regression `slope_stderr` over the remaining dims (e.g. `parametrization`).
    """
    if dim not in values.dims:
        raise ValueError(f"values need a {dim!r} dim to fit a slope over; got dims {values.dims}.")
    mean = values.mean([d for d in average if d in values.dims])
    logw = np.log(mean[dim].values.astype(float))

    def slope(y: np.ndarray) -> np.ndarray:
        return np.array(_fit(logw, np.log(y)))

    out = xr.apply_ufunc(slope, mean, input_core_dims=[[dim]], output_core_dims=[["stat"]], vectorize=True)
    ds = xr.Dataset({"slope": out.isel(stat=0, drop=True), "slope_stderr": out.isel(stat=1, drop=True)})
    ds.attrs["description"] = f"least-squares slope of log {values.name or 'value'} on log {dim}"
    return ds


def optimum_shift(loss: xr.DataArray, *, lr_dim: str = "lr", width_dim: str = "width") -> xr.Dataset:
    """Loss-minimising learning rate per width (loss averaged over `seed` if present; NaN = diverged = +inf)
    and `shift_steps`: how many grid steps it moves across widths (max - min index on the lr grid).

    Returns `optimal_lr` (width, ...), `optimal_index` (width, ...) and `shift_steps` (...).
    """
    for d in (lr_dim, width_dim):
        if d not in loss.dims:
            raise ValueError(f"loss needs dims {lr_dim!r} and {width_dim!r}; got {loss.dims}.")
    mean = loss.mean("seed") if "seed" in loss.dims else loss
    mean = mean.sortby(lr_dim).fillna(np.inf)
    index = mean.argmin(lr_dim)
    ds = xr.Dataset({"optimal_index": index, "optimal_lr": mean[lr_dim][index].drop_vars(lr_dim),
                     "shift_steps": index.max(width_dim) - index.min(width_dim)})
    ds.attrs["description"] = "loss-minimising learning rate per width and its shift in grid steps"
    return ds


def edge_of_stability_summary(sharpness: xr.DataArray, lr: float, *, dim: str = "epoch") -> xr.Dataset:
    """Sharpness against 2/lr (Cohen et al. 2021): `initial`, `max_relative_deviation` of the last half
    from 2/lr, `mean_last_half`, `rose` (initial < 0.85 * 2/lr and the last half within the band)."""
    s = sharpness.values.astype(float)
    edge = 2.0 / lr
    last = s[len(s) // 2:]
    deviation = float(np.max(np.abs(last / edge - 1)))
    return xr.Dataset({"edge": edge, "initial": float(s[0]), "mean_last_half": float(np.mean(last)),
                       "max_relative_deviation": deviation},
                      attrs={"description": "sharpness vs the gradient-descent stability edge 2/lr"})


def gather(run_paths: xr.DataArray, read: Callable[[Any], float]) -> xr.DataArray:
    """`read(run)` for every run of a grid, as a DataArray with the grid's dims.

    `run_paths` holds one run directory per point, with the grid's dims (a sweep record's
    `sweep.runs["run_path"]`: one dim per swept key, e.g. `width`, `lr`, and `seed`); each is opened with
    `nde_lab.open_run` and reduced by `read` (e.g. `lambda run: float(run.group("ntk")["analytic_error"][0])`).
    """
    from nde_lab.store.reader import open_run

    values = np.vectorize(lambda path: float(read(open_run(str(path)))), otypes=[float])(run_paths.values)
    return xr.DataArray(values, dims=run_paths.dims, coords=run_paths.coords)
