"""Generative models: a flow's or CNF's density on a grid next to its samples; VAE reconstructions and samples."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from nde_lab.plot._common import new_figure

__all__ = ["plot_density", "plot_images"]

_N_IMAGES = 16


def plot_density(run: Any, *, fig: Figure | None = None) -> Figure:
    """Left: the fitted density exp(log p) on the stored grid; right: the stored samples (same limits)."""
    density = run.group("density")
    samples = run.group("samples")["x"]
    fig = fig or new_figure(9.0, 4.2)
    left, right = fig.subplots(1, 2)
    lp = density["log_prob"]
    if "label" in lp.dims:  # class-conditional: the mixture over labels is not stored; show label 0
        lp = lp.isel(label=0)
        samples = samples.isel(label=0) if "label" in samples.dims else samples
    x, y = density["x"].values, density["y"].values
    image = left.pcolormesh(x, y, np.exp(lp.transpose("y", "x").values), shading="auto", cmap="viridis")
    fig.colorbar(image, ax=left, label="density")
    integral = density.attrs.get("integral")
    left.set_title("fitted density" + (f" (grid integral {float(integral):.3f})" if integral is not None else ""))
    right.scatter(samples.values[:, 0], samples.values[:, 1], s=4, color="C1", alpha=0.7)
    right.set_title(f"{samples.sizes['sample']} samples")
    names = [str(d) for d in samples["dim"].values] if "dim" in samples.coords else ["x0", "x1"]
    for ax in (left, right):
        ax.set_xlim(x.min(), x.max())
        ax.set_ylim(y.min(), y.max())
        ax.set_aspect("equal")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    fig.suptitle(f"{run.attrs.get('experiment', '')}: density and samples")
    return fig


def _mosaic(images: np.ndarray, shape: tuple[int, int], ncols: int = 8) -> np.ndarray:
    """Tile (n, h*w) images into one array with one-pixel gaps."""
    h, w = shape
    n = len(images)
    rows = int(np.ceil(n / ncols))
    out = np.full((rows * (h + 1) - 1, ncols * (w + 1) - 1), np.nan)
    for k, img in enumerate(images):
        r, c = divmod(k, ncols)
        out[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = img.reshape(h, w)
    return out


def plot_images(run: Any, *, fig: Figure | None = None) -> Figure:
    """Three panels: held-out images, their reconstructions E[x | z], and E[x | z] for prior samples."""
    rec = run.group("reconstruction")
    samples = run.group("samples")
    shape = tuple(int(s) for s in rec.attrs.get("image_shape", [8, 8]))
    panels = [
        ("held-out images", rec["x"].values[:_N_IMAGES]),
        ("reconstructions", rec["x_rec"].values[:_N_IMAGES]),
        ("samples (decoder mean)", samples["mean" if "mean" in samples else "x"].values[:_N_IMAGES]),
    ]
    fig = fig or new_figure(10.0, 3.0)
    for ax, (title, images) in zip(fig.subplots(1, 3), panels, strict=True):
        ax.imshow(_mosaic(images, shape), cmap="magma", interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    fig.suptitle(f"{run.attrs.get('experiment', '')}: VAE reconstructions and samples")
    return fig
