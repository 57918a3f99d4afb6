"""Pictures of runs and sweeps (matplotlib; ArviZ for posteriors). Every function returns a
`matplotlib.figure.Figure` built without pyplot, so it works headless and in notebooks alike.

`plot_run(run, kind)` dispatches on `KINDS`; `DEFAULT_KINDS` names each family's first picture.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from matplotlib.figure import Figure

from nde_lab.plot.curves import plot_training
from nde_lab.plot.generative import plot_density, plot_images
from nde_lab.plot.phase import plot_phase
from nde_lab.plot.posterior import plot_posterior, plot_predictive_check
from nde_lab.plot.sweep import plot_sweep
from nde_lab.plot.theory import (
    plot_coordinate_check,
    plot_hessian,
    plot_hessian_spectrum,
    plot_ntk,
    plot_pruning,
    plot_weight_change,
    plot_width_slopes,
)
from nde_lab.plot.trajectories import plot_trajectories

__all__ = [
    "DEFAULT_KINDS",
    "KINDS",
    "available_kinds",
    "plot_density",
    "plot_images",
    "plot_phase",
    "plot_posterior",
    "plot_predictive_check",
    "plot_run",
    "plot_sweep",
    "plot_training",
    "plot_trajectories",
    "plot_width_slopes",
]

#: kind -> (plot function of a run, the groups it needs)
KINDS: dict[str, tuple[Callable[..., Figure], tuple[str, ...]]] = {
    "trajectories": (plot_trajectories, ("observed_data",)),
    "phase": (plot_phase, ("trajectories", "observed_data")),
    "density": (plot_density, ("density", "samples")),
    "images": (plot_images, ("reconstruction", "samples")),
    "training": (plot_training, ("metrics",)),
    "trace": (partial(plot_posterior, kind="trace"), ("posterior",)),
    "rank": (partial(plot_posterior, kind="rank"), ("posterior",)),
    "pair": (partial(plot_posterior, kind="pair"), ("posterior",)),
    "predictive": (plot_predictive_check, ("observed_data", "posterior_predictive")),
    # theory probes (nde_lab.theory callbacks; docs/theory.md)
    "ntk": (plot_ntk, ("ntk",)),
    "hessian": (plot_hessian, ("hessian",)),
    "hessian_spectrum": (plot_hessian_spectrum, ("hessian_final",)),
    "coordinate_check": (plot_coordinate_check, ("coordinate_check",)),
    "weight_change": (plot_weight_change, ("weight_change",)),
    "pruning": (plot_pruning, ("pruning",)),
}

#: model family -> the picture a researcher looks at first
DEFAULT_KINDS: dict[str, str] = {
    "neural_ode": "trajectories",
    "sde": "trajectories",
    "latent_sde": "trajectories",
    "bayes_fast": "trajectories",
    "bayes_neural_ode": "trajectories",
    "bayes_svi": "predictive",
    "bayes_nuts": "predictive",
    "flow": "density",
    "cnf": "density",
    "vae": "images",
}


def _has_time(run: Any) -> bool:
    return "observed_data" in run.groups and "time" in run.group("observed_data").dims


def available_kinds(run: Any) -> list[str]:
    """The kinds of picture this run has the groups for."""
    groups = set(run.groups)
    kinds = [k for k, (_, needs) in KINDS.items() if set(needs) <= groups]
    if not _has_time(run):
        kinds = [k for k in kinds if k not in ("trajectories", "phase")]
    elif "predictive" in kinds:
        kinds.remove("predictive")
    if "phase" in kinds and (run.attrs.get("model_family") != "neural_ode"
                             or run.group("trajectories").sizes.get("state") != 2):
        kinds.remove("phase")
    return kinds


def plot_run(run: Any, kind: str | None = None, **kwargs: Any) -> Figure:
    """The figure of `kind` for a stored run (default: its family's first picture, else training curves).

    Raises:
        ValueError: the kind is unknown or the run lacks what it needs (the message lists the kinds it has).
    """
    kinds = available_kinds(run)
    if kind is None:
        default = DEFAULT_KINDS.get(str(run.attrs.get("model_family")))
        kind = default if default in kinds else ("training" if "training" in kinds else (kinds or [None])[0])
        if kind is None:
            raise ValueError(f"run {str(run.path)!r} has nothing to plot (groups: {sorted(run.groups)}).")
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not a plot kind; must be one of {', '.join(KINDS)}.")
    if kind not in kinds:
        raise ValueError(f"run {str(run.path)!r} cannot show kind={kind!r}; it has: {', '.join(kinds) or 'none'}.")
    return KINDS[kind][0](run, **kwargs)
