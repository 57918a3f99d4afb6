"""Observed data with the fitted and extrapolated trajectory and credible bands over time."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from nde_lab.plot._common import BAND_LEVELS, axes_grid, band, label, new_figure

__all__ = ["plot_trajectories"]

_MAX_PATHS = 4  # observed paths drawn for ensembles; per-path panels for latent SDEs


def _time_label(ds: xr.Dataset) -> str:
    return label(ds["time"], "time") if "time" in ds.coords else "time"


def _quantile_band(ax: Any, time: np.ndarray, quantiles: xr.DataArray, color: str) -> None:
    """Shade bands from a stored `quantiles` variable along `quantile` (levels from its coordinate)."""
    qs = np.asarray(quantiles["quantile"].values, dtype=float)
    for level in BAND_LEVELS:
        lo, hi = (1 - level) / 2, (1 + level) / 2
        if np.isclose(qs, lo).any() and np.isclose(qs, hi).any():
            lower = quantiles.isel(quantile=int(np.argmin(abs(qs - lo)))).values
            upper = quantiles.isel(quantile=int(np.argmin(abs(qs - hi)))).values
            ax.fill_between(time, lower, upper, color=color, alpha=0.2 if level > 0.6 else 0.35,
                            label=f"{level:.0%} band", linewidth=0)


def _draw_bands(ax: Any, time: np.ndarray, draws: xr.DataArray, dims: list[str], color: str) -> None:
    for level in BAND_LEVELS:
        lower, upper = band(draws, dims, level)
        ax.fill_between(time, lower, upper, color=color, alpha=0.2 if level > 0.6 else 0.35,
                        label=f"{level:.0%} band", linewidth=0)
    ax.plot(time, draws.median(dims).values, color=color, lw=1.5, label="median")


def _observed_cut(ax: Any, until: Any) -> None:
    if until is not None:
        ax.axvline(float(until), color="0.4", ls="--", lw=1)
        ax.axvspan(float(until), ax.get_xlim()[1], color="0.9", zorder=-1, label="extrapolated")


def plot_trajectories(run: Any, *, fig: Figure | None = None) -> Figure:
    """One panel per state (per held-out path for latent SDEs): the observed data as points, the fitted
    trajectory (deterministic models) or the median of the stored draws, 90% and 50% bands, and the
    extrapolated region shaded. Units come from the stored `units` attrs."""
    groups = set(run.groups)
    fig = fig or new_figure(9.0, 3.6)
    if "posterior_predictive" in groups and "path" in run.group("posterior_predictive").dims:
        return _latent_paths(run, fig)
    observed = run.group("observed_data") if "observed_data" in groups else None
    if observed is not None and "time" not in observed.dims:
        raise ValueError("this run's observed data has no time axis; try --kind predictive.")
    if "posterior_predictive" in groups:
        pp = run.group("posterior_predictive")
        draws, dims, source = pp["y"], ["chain", "draw"], pp
    elif "trajectories" in groups:
        source = run.group("trajectories")
        draws = source["y"]
        dims = ["sample"] if "sample" in draws.dims else []
    else:
        raise ValueError("this run stores no trajectories or posterior predictive.")
    states = [str(s) for s in draws["state"].values]
    axes = axes_grid(fig, len(states))
    time = source["time"].values
    summary = run.group("summary") if "summary" in groups and dims != ["chain", "draw"] else None
    for ax, state in zip(axes, states, strict=True):
        d = draws.sel(state=state)
        if not dims:
            ax.plot(time, d.values, color="C0", lw=1.5, label="fitted", zorder=3)
        elif summary is not None and "quantiles" in summary and "sample" not in summary["quantiles"].dims:
            _quantile_band(ax, time, summary["quantiles"].sel(state=state), "C0")
            ax.plot(time, summary["mean"].sel(state=state).values, color="C0", lw=1.5, label="mean")
        else:
            _draw_bands(ax, time, d, dims, "C0")
        if observed is not None:
            y = observed["y"].sel(state=state)
            if "path" in y.dims:  # an observed ensemble: a few paths
                for k in range(min(_MAX_PATHS, y.sizes["path"])):
                    ax.plot(observed["time"].values, y.isel(path=k).values, color="C1", lw=0.7, alpha=0.8,
                            label="observed paths" if k == 0 else None)
            else:
                dense = y.sizes["time"] > 200
                ax.plot(observed["time"].values, y.values, "o", color="C1", ms=1.5 if dense else 3,
                        alpha=0.5 if dense else 1.0, label="observed", zorder=2)
        _observed_cut(ax, source["y"].attrs.get("observed_until", source.attrs.get("observed_until")))
        ax.set_title(state)
        ax.set_xlabel(_time_label(source))
        ax.set_ylabel(label(draws if draws.attrs.get("units") or observed is None else observed["y"], "y"))
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{run.attrs.get('experiment', '')}: " + {0: "fitted trajectory", 1: "simulated paths: mean and bands",
                                                             2: "posterior predictive: median and bands"}[len(dims)])
    return fig


def _latent_paths(run: Any, fig: Figure) -> Figure:
    pp = run.group("posterior_predictive")
    observed = run.group("observed_data")
    paths = pp["path"].values[:_MAX_PATHS]
    state = pp["state"].values[0]
    axes = axes_grid(fig, len(paths), ncols=min(len(paths), 4))
    mask = observed["observed"].values.astype(bool) if "observed" in observed else np.ones(observed.sizes["time"], bool)
    for ax, path in zip(axes, paths, strict=True):
        _draw_bands(ax, pp["time"].values, pp["y"].sel(path=path, state=state), ["sample"], "C0")
        y = observed["y"].sel(path=path, state=state).values
        t = observed["time"].values
        ax.plot(t[mask], y[mask], "o", color="C1", ms=3, label="observed")
        ax.plot(t[~mask], y[~mask], "x", color="C3", ms=5, label="held out")
        ax.set_title(f"path {path}")
        ax.set_xlabel(_time_label(pp))
    axes[0].set_ylabel(label(pp["y"], str(state)))
    axes[0].legend(fontsize="small")
    fig.suptitle(f"{run.attrs.get('experiment', '')}: posterior predictive of held-out paths")
    return fig
