"""Pictures of the theory probes' groups (docs/theory.md): NTK spectrum and drift, sharpness against the
edge of stability 2/eta, the Hessian's spectral density, muP's coordinate check, weight change, pruning,
and a log-log width-slope figure of an analysis grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from nde_lab.plot._common import label, new_figure

__all__ = ["plot_coordinate_check", "plot_hessian", "plot_hessian_spectrum", "plot_ntk", "plot_pruning",
           "plot_weight_change", "plot_width_slopes"]


def _title(fig: Figure, run: Any, what: str) -> Figure:
    fig.suptitle(f"{run.attrs.get('experiment', '')}: {what}")
    return fig


def _epoch_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    return [colormaps["viridis"](v) for v in np.linspace(0.0, 0.9, n)]


def plot_ntk(run: Any, *, fig: Figure | None = None) -> Figure:
    """Group `ntk`: the kernel's eigenvalues by index at every recorded epoch (log scale, colour = epoch)
    and the relative drift ||K_t - K_0||_F / ||K_0||_F (with the distance to the infinite-width kernel
    when stored) against the epoch."""
    ds = run.group("ntk")
    fig = fig or new_figure(9.0, 3.6)
    spectrum, drift = fig.subplots(1, 2)
    epochs = ds["epoch"].values
    index = np.arange(1, ds.sizes["eigen_index"] + 1)
    for colour, epoch in zip(_epoch_colours(len(epochs)), epochs, strict=True):
        values = ds["eigenvalues"].sel(epoch=epoch).values
        spectrum.plot(index, np.where(values > 0, values, np.nan), "o-", ms=3, color=colour, label=f"epoch {epoch}")
    spectrum.set_yscale("log")
    spectrum.set(xlabel="eigenvalue index", ylabel="NTK eigenvalue", title="NTK spectrum")
    spectrum.legend(fontsize="x-small")
    drift.plot(epochs, ds["drift"].values, "o-", ms=3, color="C0", label="drift from init")
    if "analytic_error" in ds:
        drift.plot(epochs, ds["analytic_error"].values, "s--", ms=3, color="C3", label="distance to infinite width")
    drift.set(xlabel="epoch", ylabel="relative Frobenius distance", title="kernel drift")
    drift.legend(fontsize="small")
    return _title(fig, run, "neural tangent kernel")


def plot_hessian(run: Any, *, fig: Figure | None = None) -> Figure:
    """Group `hessian`: sharpness (top eigenvalue) and the other top eigenvalues against the epoch, with the
    gradient-descent stability edge 2/eta (attr `edge`); the Hutchinson trace ± 2 MCSE beside it if stored."""
    ds = run.group("hessian")
    has_trace = "trace" in ds
    fig = fig or new_figure(9.0 if has_trace else 6.0, 3.6)
    axes = fig.subplots(1, 2 if has_trace else 1, squeeze=False).ravel()
    epochs = ds["epoch"].values
    ax = axes[0]
    for k in range(1, ds.sizes["eigen_index"]):
        ax.plot(epochs, ds["top_eigenvalues"].isel(eigen_index=k).values, ".--", color="0.6", lw=0.8,
                label="next eigenvalues" if k == 1 else None)
    ax.plot(epochs, ds["sharpness"].values, "o-", ms=3, color="C0", label="sharpness λ_max")
    if "edge" in ds.attrs:
        ax.axhline(float(ds.attrs["edge"]), color="C3", ls="--", label=f"2/η = {float(ds.attrs['edge']):.3g}")
    ax.set(xlabel="epoch", ylabel="Hessian eigenvalue", title="sharpness (edge of stability)")
    ax.legend(fontsize="small")
    if has_trace:
        trace, err = ds["trace"].values, ds["trace_mcse"].values
        axes[1].plot(epochs, trace, "o-", ms=3, color="C2", label="Hutchinson trace")
        axes[1].fill_between(epochs, trace - 2 * err, trace + 2 * err, color="C2", alpha=0.25, lw=0, label="± 2 MCSE")
        axes[1].set(xlabel="epoch", ylabel="tr H", title="Hessian trace")
        axes[1].legend(fontsize="small")
    return _title(fig, run, "loss Hessian along training")


def plot_hessian_spectrum(run: Any, *, fig: Figure | None = None) -> Figure:
    """Group `hessian_final`: the SLQ spectral density of the final loss Hessian (linear eigenvalue axis,
    log density over six decades), with the Lanczos top eigenvalues as vertical lines."""
    ds = run.group("hessian_final")
    fig = fig or new_figure(6.4, 3.8)
    ax = fig.subplots()
    density = ds["density"].values
    ax.plot(ds["eigenvalue"].values, np.where(density > 0, density, np.nan), color="C0", label="SLQ density")
    for k, value in enumerate(ds["top_eigenvalues"].values):
        ax.axvline(float(value), color="C3", ls=":", lw=1, label="Lanczos top eigenvalues" if k == 0 else None)
    ax.set_yscale("log")
    ax.set_ylim(np.nanmax(density) * 1e-6, np.nanmax(density) * 3)  # Gaussian tails would span 1e-80
    ax.set(xlabel="eigenvalue", ylabel="density", title="final Hessian spectral density")
    ax.legend(fontsize="small")
    return _title(fig, run, "Hessian spectrum")


def plot_coordinate_check(run: Any, *, fig: Figure | None = None) -> Figure:
    """Group `coordinate_check`: per layer, the RMS pre-activation size and its change since init against the
    optimizer step (log scale); flat lines across widths are muP's signature."""
    ds = run.group("coordinate_check")
    fig = fig or new_figure(9.0, 3.6)
    axes = fig.subplots(1, 2)
    steps = ds["step"].values
    n_layers = ds.sizes["layer"]
    for ax, name, title in zip(axes, ("activation_size", "update_size"), ("RMS of h^l", "RMS of h^l_t - h^l_0"),
                               strict=True):
        for layer in range(n_layers):
            values = ds[name].isel(layer=layer).values
            last = layer == n_layers - 1
            ax.plot(steps, np.where(values > 0, values, np.nan), "o-", ms=3, color=f"C{layer}",
                    label="output" if last else f"layer {layer}")
        ax.set_yscale("log")
        ax.set(xlabel="optimizer step", ylabel=title, title=name.replace("_", " "))
        ax.legend(fontsize="small")
    return _title(fig, run, f"coordinate check ({run.attrs.get('parametrization', '?')}, "
                            f"width {run.attrs.get('width', '?')})")


def plot_weight_change(run: Any, *, fig: Figure | None = None) -> Figure:
    """Group `weight_change`: relative change of each effective weight tensor and of all of them, vs the epoch."""
    ds = run.group("weight_change")
    fig = fig or new_figure(6.4, 3.8)
    ax = fig.subplots()
    epochs = ds["epoch"].values
    for k, name in enumerate(ds["tensor"].values):
        ax.plot(epochs, ds["relative_change"].isel(tensor=k).values, ".-", lw=0.8, color=f"C{k + 1}", label=str(name))
    ax.plot(epochs, ds["total_relative_change"].values, "o-", ms=3, lw=2, color="C0", label="all weights")
    ax.set(xlabel="epoch", ylabel="||W_t - W_0|| / ||W_0||", title="weight change from initialisation")
    ax.legend(fontsize="x-small")
    return _title(fig, run, "weight change")


def plot_pruning(run: Any, *, fig: Figure | None = None) -> Figure:
    """Group `pruning`: loss and MAE (training, and test when stored) against the pruned fraction."""
    ds = run.group("pruning")
    fig = fig or new_figure(9.0, 3.6)
    axes = fig.subplots(1, 2)
    amount = ds["amount"].values
    for ax, name in zip(axes, ("loss", "mae"), strict=True):
        ax.plot(amount, ds[name].values, "o-", ms=3, color="C0", label="train")
        if f"test_{name}" in ds:
            ax.plot(amount, ds[f"test_{name}"].values, "s--", ms=3, color="C1", label="test")
        ax.set(xlabel="fraction of weights pruned", ylabel=name, title=f"{name} after magnitude pruning")
        ax.legend(fontsize="small")
    return _title(fig, run, "pruning curve")


def plot_width_slopes(values: xr.DataArray, *, dim: str = "width", seed_dim: str = "seed",
                      fig: Figure | None = None) -> Figure:
    """Log-log picture of `values` against `dim` (an analysis grid, e.g. `nde_lab.theory.gather`'s result):
    every seed as a dot, the mean over seeds joined, and the least-squares line of
    `nde_lab.theory.width_slopes` with its slope ± s.e. in the legend; one colour per value of any other dim.

    Args:
        values: positive values with a `dim` dim (and optionally `seed_dim` and one more dim, e.g.
            `parametrization`).
    """
    from nde_lab.theory.analysis import width_slopes

    if dim not in values.dims:
        raise ValueError(f"values need a {dim!r} dim; got dims {values.dims}.")
    others = [d for d in values.dims if d not in (dim, seed_dim)]
    if len(others) > 1:
        raise ValueError(f"values may have one dim besides {dim!r} and {seed_dim!r}; got {others}.")
    stacked = values.expand_dims("_line") if not others else values.rename({others[0]: "_line"})
    slopes = width_slopes(stacked, dim=dim, average=(seed_dim,))
    fig = fig or new_figure(6.4, 4.2)
    ax = fig.subplots()
    width = values[dim].values.astype(float)
    for k in range(stacked.sizes["_line"]):
        line = stacked.isel(_line=k)
        name = str(line["_line"].values) if others else (values.name or "value")
        if seed_dim in line.dims:
            for s in range(line.sizes[seed_dim]):
                ax.plot(width, line.isel({seed_dim: s}).transpose(dim).values, "o", ms=3, alpha=0.4, color=f"C{k}")
        mean = line.mean(seed_dim) if seed_dim in line.dims else line
        slope, err = float(slopes["slope"].isel(_line=k)), float(slopes["slope_stderr"].isel(_line=k))
        ax.plot(width, mean.transpose(dim).values, "o", ms=5, color=f"C{k}")
        intercept = np.mean(np.log(mean.transpose(dim).values) - slope * np.log(width))
        grid = np.geomspace(width.min(), width.max(), 50)
        ax.plot(grid, np.exp(intercept) * grid**slope, "-", color=f"C{k}", label=f"{name}: slope {slope:.2f} ± {err:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel=label(values[dim], dim), ylabel=label(values, str(values.name or "value")),
           title=f"log-log slope over {dim}")
    ax.legend(fontsize="small")
    return fig
