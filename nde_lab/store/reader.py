"""Opening runs: `open_run`, `list_runs`, and the `Run` object that queries go through."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr
import yaml

import nde_lab.query  # noqa: F401  (registers the Dataset.nde accessor)
from nde_lab.errors import RunNotReadyError, StoreError
from nde_lab.store.layout import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    PARTIAL_SUFFIX,
    ZARR_NAME,
    resolve_store,
)

if TYPE_CHECKING:
    import pandas as pd

    from nde_lab.train.base import LabTask

__all__ = ["Run", "list_runs", "open_run", "resolve_run_dir"]


def _open_tree(zarr_path: Path) -> xr.DataTree:
    # Times are stored as plain numbers with free-text units ("years since 1900"): no CF decoding.
    return xr.open_datatree(
        zarr_path, engine="zarr", consolidated=False, zarr_format=3, decode_times=False, decode_timedelta=False
    )


def _root_attrs(zarr_path: Path) -> dict[str, Any]:
    import zarr

    return dict(zarr.open_group(str(zarr_path), mode="r", zarr_format=3).attrs)


def resolve_run_dir(path: str | os.PathLike) -> Path:
    """A run directory from `path`: the directory itself, or `<store>/<experiment>/latest`
    (the newest complete run of that experiment)."""
    path = Path(path).expanduser()
    if path.name == "latest" and not path.exists():
        experiment = path.parent
        if not experiment.is_dir():
            raise StoreError(f"no experiment directory {str(experiment)!r}; list the store with nde_lab.list_runs().")
        runs = sorted(p for p in experiment.iterdir() if p.is_dir() and not p.name.startswith("."))
        complete = [p for p in runs if (p / ZARR_NAME).exists() and _root_attrs(p / ZARR_NAME).get("status") == "complete"]
        if not complete:
            raise StoreError(f"experiment {str(experiment)!r} has no complete run ({len(runs)} run(s) in total).")
        return complete[-1]
    if not (path / ZARR_NAME).exists():
        raise StoreError(f"{str(path)!r} is not a run directory (no {ZARR_NAME}); give <store>/<experiment>/<run_id> or .../latest.")
    return path


def open_run(path: str | os.PathLike, *, allow_incomplete: bool = False) -> Run:
    """Open a stored run for analysis and queries.

    Args:
        path: a run directory, or `<store>/<experiment>/latest` for the newest complete run.
        allow_incomplete: open a failed or running run anyway (for post-mortems); queries that
            need a trained model may still fail on it.

    Raises:
        StoreError: the path is not a run.
        RunNotReadyError: the run failed or is still running (the message gives the reason).
    """
    run_dir = resolve_run_dir(path)
    attrs = _root_attrs(run_dir / ZARR_NAME)
    status = attrs.get("status")
    if status != "complete" and not allow_incomplete:
        reason = f": {attrs.get('failure')}" if attrs.get("failure") else ""
        raise RunNotReadyError(
            f"run {str(run_dir)!r} is {status!r}, not complete{reason}. "
            "Pass allow_incomplete=True to inspect it anyway."
        )
    return Run(run_dir)


class Run:
    """A stored run: lazy xarray views of its groups, its config, its restored model, and queries."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r}, model_family={self.attrs.get('model_family')!r})"

    # ---- stored data ------------------------------------------------------------------------------
    @cached_property
    def tree(self) -> xr.DataTree:
        """The whole run as a lazy DataTree (groups as in docs/architecture.md)."""
        return _open_tree(self.path / ZARR_NAME)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.tree.attrs)

    @property
    def status(self) -> str:
        return str(self.attrs.get("status"))

    def group(self, name: str) -> xr.Dataset:
        """One group as a Dataset; a missing group raises KeyError listing the groups present."""
        if name not in self.tree.children:
            raise KeyError(f"run has no group {name!r}; it has {sorted(self.tree.children)}.")
        return self.tree[name].to_dataset()

    @property
    def trajectories(self) -> xr.Dataset:
        return self.group("trajectories")

    @property
    def observed(self) -> xr.Dataset:
        return self.group("observed_data")

    @property
    def metrics(self) -> xr.Dataset:
        return self.group("metrics")

    @property
    def posterior(self) -> xr.Dataset:
        return self.group("posterior")

    @property
    def summary(self) -> xr.Dataset:
        return self.group("summary")

    @cached_property
    def config(self) -> dict[str, Any]:
        """The resolved recipe this run was made from."""
        return yaml.safe_load((self.path / CONFIG_FILE).read_text())

    def plot(self, kind: str | None = None, **kwargs: Any) -> Any:
        """A matplotlib Figure of this run: `kind` in `nde_lab.plot.KINDS` (trajectories, phase, density,
        images, training, trace, rank, pair, predictive); default: the family's first picture."""
        from nde_lab.plot import plot_run

        return plot_run(self, kind, **kwargs)

    # ---- the model --------------------------------------------------------------------------------
    @cached_property
    def model(self) -> LabTask:
        """The trained task, rebuilt from the config and restored with torch's weights-only loading."""
        from nde_lab.store.restore import restore_task

        return restore_task(self.config, self.path / CHECKPOINT_DIR)

    # ---- queries ----------------------------------------------------------------------------------
    def predict(self, times: Any = None, **kwargs: Any) -> xr.Dataset:
        """Model trajectories at `times` (default: the stored grid); keywords depend on the family
        (`y0` for ODEs, `n` and `seed` for Bayesian and stochastic models)."""
        return self.model.query_predict(self, None if times is None else np.asarray(times, dtype=np.float64), **kwargs)

    def sample(self, n: int, **kwargs: Any) -> xr.Dataset:
        """`n` new draws (paths, posterior draws or samples, by family) as a Dataset."""
        return self.model.query_sample(self, n, **kwargs)

    def log_prob(self, x: Any, **kwargs: Any) -> xr.DataArray:
        """Log-density in nats of points `x` of shape (n, dim) -> DataArray of shape (n,)."""
        return self.model.query_log_prob(self, np.asarray(x), **kwargs)

    # ---- Monte Carlo queries (each answer carries mcse and n_draws) --------------------------------
    def expect(
        self,
        fn: Callable[[xr.Dataset], xr.DataArray],
        *,
        n: int | None = None,
        target_mcse: float | None = None,
        draws: Literal["sample", "posterior"] = "sample",
        batch: int = 1000,
        seed: int = 0,
        **sample_kwargs: Any,
    ) -> xr.Dataset:
        """E[fn(X)] with its Monte Carlo standard error.

        `draws="sample"`: X are fresh draws from `run.sample` (paths, samples, posterior draws),
        `n` of them or as many as `target_mcse` needs, streamed in batches. `draws="posterior"`:
        X are the stored posterior draws (chain, draw), and the error uses their ESS.
        `fn` gets a Dataset with a "sample" dimension and returns a DataArray along it.
        """
        from nde_lab.query import expect, expect_draws

        if draws == "posterior":
            if n is not None or target_mcse is not None:
                raise ValueError("draws='posterior' uses every stored draw; n and target_mcse do not apply.")
            return expect_draws(self.posterior, fn)
        if draws != "sample":
            raise ValueError(f"draws={draws!r} is not valid; must be one of 'sample', 'posterior'.")
        if n is None and target_mcse is None:
            n = 4000
        return expect(lambda size, s: self.sample(size, seed=s, **sample_kwargs), fn,
                      n=n, target_mcse=target_mcse, batch=batch, seed=seed)

    def prob(self, event: Callable[[xr.Dataset], xr.DataArray], **kwargs: Any) -> xr.Dataset:
        """P(event(X)) with its Monte Carlo standard error; keywords as in `expect`."""
        return self.expect(lambda ds: event(ds).astype(np.float64), **kwargs)

    def interval(
        self, fn: Callable[[xr.Dataset], xr.DataArray], *, level: float = 0.9, n: int = 4000, seed: int = 0,
        **sample_kwargs: Any,
    ) -> xr.Dataset:
        """Equal-tailed `level` credible interval of fn(X) over `n` draws, with the MC error of each end."""
        from nde_lab.query import interval

        values = fn(self.sample(n, seed=seed, **sample_kwargs))
        if "sample" not in values.dims:
            raise ValueError(f"fn must return values along 'sample'; got dims {values.dims}.")
        values = values.transpose("sample", ...)
        other = [d for d in values.dims if d != "sample"]
        flat = values.values.reshape(values.sizes["sample"], -1)
        rows = [interval(flat[:, k], level) for k in range(flat.shape[1])]
        shape = [values.sizes[d] for d in other]
        coords = {d: values[d] for d in other if d in values.coords}
        names = ("lower", "upper", "lower_mcse", "upper_mcse")
        return xr.Dataset(
            {k: (other, np.array([r[k] for r in rows]).reshape(shape)) for k in names},
            coords=coords, attrs={"level": level, "n_draws": n},
        )


def list_runs(store: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run in the store: experiment, run_id, status, created, model_family, final_loss,
    the family's headline `metric` and its `value` (nde_lab/headline.py), parent, partial, path.

    Runs still being assembled appear with status 'running' and `partial=True`.
    """
    import pandas as pd

    root = resolve_store(store)
    rows = []
    for experiment in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for run_dir in sorted(p for p in experiment.iterdir() if p.is_dir()):
            zarr_path = run_dir / ZARR_NAME
            if not zarr_path.exists():
                continue
            partial = run_dir.name.endswith(PARTIAL_SUFFIX)
            attrs = _root_attrs(zarr_path)
            rows.append({
                "experiment": experiment.name,
                "run_id": run_dir.name.strip(".").removesuffix(PARTIAL_SUFFIX) if partial else run_dir.name,
                "status": attrs.get("status"),
                "created": attrs.get("created"),
                "model_family": attrs.get("model_family"),
                "final_loss": _final_loss(zarr_path) if attrs.get("status") == "complete" else float("nan"),
                **_headline(zarr_path, attrs),
                "parent": attrs.get("parent") or attrs.get("resumed_from") or "",
                "partial": partial,
                "path": str(run_dir),
            })
    columns = ["experiment", "run_id", "status", "created", "model_family", "final_loss", "metric", "value", "parent",
               "partial", "path"]
    return pd.DataFrame(rows, columns=columns)


def _headline(zarr_path: Path, attrs: dict[str, Any]) -> dict[str, Any]:
    """The family's headline metric {"metric": label, "value": number} (NaN when the run has none)."""
    from nde_lab.headline import headline_metric, tree_reader

    try:
        metric, value = headline_metric(attrs, tree_reader(_open_tree(zarr_path)))
    except (FileNotFoundError, KeyError, OSError, ValueError):
        metric, value = "", float("nan")
    return {"metric": metric, "value": value}


def _final_loss(zarr_path: Path) -> float:
    """The last finite training objective in `metrics` (train_loss, else loss, else the first *_loss,
    else train_nll, else minus train_elbo)."""
    try:
        metrics = xr.open_zarr(zarr_path, group="metrics", consolidated=False, zarr_format=3, decode_times=False)
    except (FileNotFoundError, KeyError, OSError, ValueError):
        return float("nan")
    with metrics:
        names = [n for n in ("train_loss", "loss") if n in metrics] or sorted(n for n in metrics if n.endswith("loss"))
        names = names or [n for n in ("train_nll", "val_nll", "train_elbo", "val_elbo") if n in metrics]
        if not names:
            return float("nan")
        sign = -1.0 if names[0].endswith("elbo") else 1.0
        values = sign * np.asarray(metrics[names[0]].values, dtype=float)
        finite = values[np.isfinite(values)]
        return float(finite[-1]) if finite.size else float("nan")
