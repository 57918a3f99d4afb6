"""Training curves: every metric the task logged, along epochs."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from nde_lab.plot._common import axes_grid, new_figure

__all__ = ["plot_training"]

_SKIP = {"step", "wall_time", "epoch"}
_MAX_PANELS = 6


def _panels(names: list[str]) -> dict[str, list[str]]:
    """Group `train_X`/`val_X` of the same quantity in one panel."""
    panels: dict[str, list[str]] = {}
    for name in names:
        key = name.removeprefix("train_").removeprefix("val_")
        panels.setdefault(key, []).append(name)
    return panels


def plot_training(run: Any, *, fig: Figure | None = None) -> Figure:
    """One panel per logged quantity (train and validation together), against the epoch."""
    metrics = run.group("metrics")
    names = [n for n in metrics.data_vars if n not in _SKIP and np.isfinite(metrics[n].values).any()]
    if not names:
        raise ValueError("this run logged no metrics.")
    panels = dict(list(_panels(sorted(names)).items())[:_MAX_PANELS])
    fig = fig or new_figure(9.0, 3.2 * int(np.ceil(len(panels) / 3)))
    epoch = metrics["epoch"].values
    for ax, (title, members) in zip(axes_grid(fig, len(panels)), panels.items(), strict=True):
        for k, name in enumerate(members):
            ax.plot(epoch, metrics[name].values, marker="o" if len(epoch) < 20 else None, ms=3, color=f"C{k}",
                    label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize="small")
    fig.suptitle(f"{run.attrs.get('experiment', '')}: training curves")
    return fig
