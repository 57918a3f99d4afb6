"""Figures of sweeps and SBC records (matplotlib; return the Figure, the caller saves it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

if TYPE_CHECKING:
    import xarray as xr
    from matplotlib.figure import Figure

    from nde_lab.sweep.record import Sweep

__all__ = ["plot_conclusion", "plot_ranks"]


def plot_ranks(tree: xr.DataTree, *, level: float = 0.99) -> Figure:
    """SBC rank histograms, one panel per parameter, with the `level` band of bin counts under
    uniformity (binomial quantiles; Talts et al. 2018, fig. 3)."""
    import matplotlib.pyplot as plt

    uni = tree["uniformity"]
    counts = uni["counts"].values  # (parameter, bin)
    n, bins = int(counts[0].sum()), counts.shape[1]
    lo, hi = stats.binom.ppf([(1 - level) / 2, (1 + level) / 2], n, 1 / bins)
    params = [str(p) for p in uni["parameter"].values]
    fig, axes = plt.subplots(1, len(params), figsize=(3.2 * len(params), 2.6), squeeze=False)
    for ax, p, c, pv in zip(axes[0], params, counts, uni["p_value"].values, strict=True):
        ax.axhspan(lo, hi, color="0.85", label=f"{level:.0%} under uniformity")
        ax.bar(np.arange(bins), c, width=0.9, color="C0")
        ax.set_title(f"{p}  (chi-square p = {pv:.2g})", fontsize=9)
        ax.set_xlabel("rank bin")
    axes[0][0].set_ylabel(f"simulations (of {n})")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_conclusion(sweep: Sweep, name: str) -> Figure:
    """A conclusion over the first grid dim: every seed's value, the across-seed mean and its 95% interval."""
    import matplotlib.pyplot as plt

    c = sweep.conclusion(name)
    fig, ax = plt.subplots(figsize=(4.5, 3))
    dims = [d for d in c["mean"].dims]
    x = c[dims[0]].values if dims else np.array([0])
    pos = np.arange(len(x))
    values = c["value"].transpose(*dims, "seed").values.reshape(len(x), -1)
    ax.plot(np.repeat(pos, values.shape[1]), values.ravel(), "o", color="0.6", ms=3, label="seeds")
    mean, lo, hi = (c[k].values.reshape(len(x), -1)[:, 0] for k in ("mean", "ci_low", "ci_high"))
    ax.errorbar(pos, mean, yerr=[mean - lo, hi - mean], fmt="s", color="C0", capsize=3, label="mean, 95% CI")
    ax.set_xticks(pos, [str(v) for v in x])
    ax.set_xlabel(dims[0] if dims else "")
    ax.set_ylabel(name)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
