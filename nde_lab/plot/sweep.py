"""Sweep plots: a conclusion against the swept key, with intervals across seeds."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from nde_lab.plot._common import axes_grid, label, new_figure

__all__ = ["plot_sweep"]


def plot_sweep(record: xr.Dataset | xr.DataArray, key: str, *, variables: list[str] | None = None,
               seed_dim: str = "seed", fig: Figure | None = None) -> Figure:
    """One panel per variable of `record` (dims: `key`, `seed_dim`, nothing else): each seed as a dot,
    the across-seed mean as a line, and mean ± 2 standard errors across seeds as a band.

    Args:
        record: a sweep's record (Dataset) or one conclusion (DataArray) with dims (`key`, `seed_dim`).
        key: the swept dimension, on the x axis (log scale when its values are positive and span > 20x).
        variables: which data variables to plot (default: all with exactly those dims).
    """
    ds = record.to_dataset(name=record.name or "value") if isinstance(record, xr.DataArray) else record
    if key not in ds.dims or seed_dim not in ds.dims:
        raise ValueError(f"the record needs dims {key!r} and {seed_dim!r}; it has {tuple(ds.dims)}.")
    names = variables or [n for n in ds.data_vars if set(ds[n].dims) == {key, seed_dim}]
    if not names:
        raise ValueError(f"no variable of the record has exactly the dims ({key!r}, {seed_dim!r}).")
    fig = fig or new_figure(4.2 * min(len(names), 3), 3.4 * int(np.ceil(len(names) / 3)))
    x = ds[key].values
    for ax, name in zip(axes_grid(fig, len(names)), names, strict=True):
        values = ds[name].transpose(key, seed_dim)
        n_seeds = values.count(seed_dim)
        mean = values.mean(seed_dim)
        se = values.std(seed_dim, ddof=1) / np.sqrt(n_seeds)
        for k in range(values.sizes[seed_dim]):
            ax.plot(x, values.isel({seed_dim: k}).values, "o", color="0.5", ms=3, alpha=0.6,
                    label="seeds" if k == 0 else None)
        ax.plot(x, mean.values, color="C0", lw=1.5, label="mean over seeds")
        ax.fill_between(x, (mean - 2 * se).values, (mean + 2 * se).values, color="C0", alpha=0.25,
                        label="mean ± 2 s.e.", linewidth=0)
        if np.issubdtype(x.dtype, np.number) and (x > 0).all() and x.max() / x.min() > 20:
            ax.set_xscale("log")
        ax.set_xlabel(label(ds[key], key))
        ax.set_ylabel(label(ds[name], name))
        ax.legend(fontsize="small")
    return fig
