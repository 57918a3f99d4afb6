"""Phase portrait of a 2-D neural ODE: the learned vector field on a grid, the fitted path and the data."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from nde_lab.plot._common import label, new_figure

__all__ = ["plot_phase"]

_GRID = 21


def _field_on_grid(task: Any, xs: np.ndarray, ys: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """dy/dt of the trained task at the grid points, in data units: scale * f(t, (y - loc) / scale)."""
    import torch

    field = task.vector_field
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    with torch.no_grad():
        dtype = next(iter(task.parameters())).dtype
        y = torch.as_tensor(grid, dtype=dtype)
        z = field.augment((y - task.data_loc) / task.data_scale)
        if z.shape[-1] != 2:
            raise ValueError("the phase portrait needs a 2-D state without augmentation.")
        dz = field(torch.tensor(t, dtype=dtype), z)
        dy = (field.project(dz) * task.data_scale).numpy()
    return dy[:, 0].reshape(len(ys), len(xs)), dy[:, 1].reshape(len(ys), len(xs))


def plot_phase(run: Any, *, fig: Figure | None = None) -> Figure:
    """State 0 against state 1: arrows of the learned vector field (at t = the first observed time; the
    lab's autonomous fields do not depend on t), the fitted and extrapolated path, and the observations.
    Restores the trained model (torch, weights-only loading)."""
    traj = run.group("trajectories")["y"]
    if traj.sizes.get("state") != 2 or "sample" in traj.dims:
        raise ValueError("a phase portrait needs a deterministic 2-D trajectory (neural ODE with two states).")
    observed = run.group("observed_data")["y"] if "observed_data" in run.groups else None
    points = traj.values if observed is None else np.concatenate([traj.values, observed.values])
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = 0.1 * (hi - lo)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], _GRID)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], _GRID)
    u, v = _field_on_grid(run.model, xs, ys, float(traj["time"].values[0]))
    fig = fig or new_figure(5.6, 5.0)
    ax = fig.subplots()
    speed = np.hypot(u, v)
    ax.quiver(xs, ys, u, v, speed, cmap="Greys", alpha=0.8, angles="xy")
    if observed is not None:
        ax.plot(observed.values[:, 0], observed.values[:, 1], ".", color="C1", ms=2, label="observed")
    until = traj.attrs.get("observed_until", run.group("trajectories").attrs.get("observed_until"))
    time = traj["time"].values
    fitted = time <= float(until) if until is not None else np.ones(len(time), bool)
    ax.plot(traj.values[fitted, 0], traj.values[fitted, 1], color="C0", lw=1.5, label="fitted")
    if (~fitted).any():
        ax.plot(traj.values[~fitted, 0], traj.values[~fitted, 1], color="C3", lw=1.5, ls="--", label="extrapolated")
    states = [str(s) for s in traj["state"].values]
    ax.set_xlabel(states[0])
    ax.set_ylabel(states[1])
    ax.legend(fontsize="small")
    ax.set_title(f"{run.attrs.get('experiment', '')}: learned vector field ({label(traj, 'y')})")
    return fig
