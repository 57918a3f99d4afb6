"""Posterior plots through ArviZ (trace, rank, pair) and a posterior-predictive check for regressions."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from nde_lab.plot._common import new_figure

__all__ = ["plot_posterior", "plot_predictive_check"]

_MAX_VARS = 4  # parameters shown; larger arrays (network weights) are left out


def _small_vars(posterior: xr.Dataset) -> list[str]:
    sizes = {n: int(np.prod([posterior[n].sizes[d] for d in posterior[n].dims if d not in ("chain", "draw")]))
             for n in posterior.data_vars}
    scalars = [n for n, s in sizes.items() if s == 1]
    small = [n for n, s in sizes.items() if 1 < s <= 2]
    return (scalars + small)[:_MAX_VARS] or [min(sizes, key=sizes.get)]


def plot_posterior(run: Any, kind: Literal["trace", "rank", "pair"] = "trace", *, fig: Figure | None = None) -> Figure:
    """ArviZ's trace (density and draws per chain), rank (rank histograms per chain) or pair plot of the
    posterior's first few small parameters."""
    try:
        import arviz as az
    except ImportError as err:
        raise ModuleNotFoundError("trace, rank and pair plots need ArviZ: pip install 'nde-lab[arviz]'.") from err

    posterior = run.group("posterior")
    names = _small_vars(posterior)
    data = az.convert_to_inference_data(posterior[names])
    n = sum(int(np.prod([posterior[v].sizes[d] for d in posterior[v].dims if d not in ("chain", "draw")])) for v in names)
    if kind == "trace":
        fig = fig or new_figure(9.0, 1.9 * n + 0.6)
        axes = np.asarray(fig.subplots(n, 2, squeeze=False))
        az.plot_trace(data, axes=axes, compact=False)
    elif kind == "rank":
        fig = fig or new_figure(3.0 * min(n, 4), 2.8 * int(np.ceil(n / 4)))
        axes = np.asarray(fig.subplots(int(np.ceil(n / 4)), min(n, 4), squeeze=False)).ravel()
        for extra in axes[n:]:
            fig.delaxes(extra)
        az.plot_rank(data, ax=axes[:n])
    elif kind == "pair":
        if n < 2:
            raise ValueError("a pair plot needs at least two scalar parameters.")
        fig = fig or new_figure(2.4 * (n - 1) + 1, 2.4 * (n - 1) + 1)
        axes = np.asarray(fig.subplots(n - 1, n - 1, squeeze=False))
        az.plot_pair(data, ax=axes, kind="scatter", scatter_kwargs={"alpha": 0.3, "s": 4})
    else:
        raise ValueError(f"kind={kind!r} is not a posterior plot; must be one of 'trace', 'rank', 'pair'.")
    fig.suptitle(f"{run.attrs.get('experiment', '')}: posterior ({kind})")
    return fig


def plot_predictive_check(run: Any, *, fig: Figure | None = None) -> Figure:
    """Observed value against the posterior-predictive median with 90% intervals, one point per observation
    (for tabular models without a time axis)."""
    observed = run.group("observed_data")["y"]
    draws = run.group("posterior_predictive")["y"]
    q = draws.quantile([0.05, 0.5, 0.95], dim=["chain", "draw"])
    lo, med, hi = (q.isel(quantile=k).values for k in range(3))
    fig = fig or new_figure(5.0, 4.6)
    ax = fig.subplots()
    ax.errorbar(observed.values, med, yerr=[med - lo, hi - med], fmt="o", ms=3, color="C0", ecolor="C0", alpha=0.5,
                label="posterior predictive (median, 90%)")
    span = [float(min(observed.min(), lo.min())), float(max(observed.max(), hi.max()))]
    ax.plot(span, span, color="C3", lw=1, label="y = x")
    inside = float(np.mean((observed.values >= lo) & (observed.values <= hi)))
    ax.set_title(f"90% intervals cover {inside:.0%} of {observed.size} observations")
    ax.set_xlabel(f"observed [{observed.attrs.get('units', '')}]".replace(" []", ""))
    ax.set_ylabel("predicted")
    ax.legend(fontsize="small")
    fig.suptitle(f"{run.attrs.get('experiment', '')}: posterior-predictive check")
    return fig
