"""`Run`: a stored run with its restored model and its queries, above the store.

The store (`nde_lab.store`) knows files, manifests and groups (`StoredRun`); this module adds what
needs the model: `Run.model` (rebuilt from `config.yaml`, weights-only loading), `predict`, `sample`,
`log_prob`, and the Monte Carlo queries. Every query that returns a Dataset takes `save_as=` to add
its answer to the run as a group (with the query, its arguments and seed as provenance).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

import nde_lab.query  # noqa: F401  (registers the Dataset.nde accessor)
from nde_lab.store.catalog import list_runs
from nde_lab.store.location import Location
from nde_lab.store.reader import StoredRun, open_stored

if TYPE_CHECKING:
    from nde_lab.train.base import LabTask

__all__ = ["Run", "list_runs", "open_run", "saveable"]


def open_run(path: str | os.PathLike | Location, *, allow_incomplete: bool = False, full_check: bool = False) -> Run:
    """Open a stored run for analysis and queries, checked against its manifest.

    Args:
        path: a run directory or URL (`file://`, `memory://`, `s3://`), or
            `<store>/<experiment>/latest` for the newest complete run by creation time.
        allow_incomplete: open a failed run anyway (for post-mortems); queries that need a trained
            model may still fail on it.
        full_check: also compare every chunk with its SHA-256 (reads the whole run once).

    Raises:
        StoreError: the path is not a run (or the store URL is not supported).
        RunDamagedError: a file of the run is missing or altered (names group and variable).
        RunNotReadyError: the run failed or is still being written (the message gives the reason).
    """
    run = open_stored(path, allow_incomplete=allow_incomplete, full_check=full_check, cls=Run)
    assert isinstance(run, Run)
    return run


def saveable(method: Callable[..., Any]) -> Callable[..., Any]:
    """Give a query method `save_as=`: its answer is added to the run as that group, with the query's
    name and keyword arguments (callables by their qualified name) as provenance."""

    @functools.wraps(method)
    def wrapper(self: Run, *args: Any, save_as: str | None = None, overwrite: bool = False, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        if save_as is None:
            return result
        described = {k: _describe(v) for k, v in kwargs.items()}
        provenance = {"query": method.__name__, "arguments": [_describe(a) for a in args], "keywords": described,
                      "seed": kwargs.get("seed", _default(method, "seed"))}
        self.save(save_as, result, overwrite=overwrite, provenance=provenance)
        return result

    return wrapper


def _default(method: Callable[..., Any], name: str) -> Any:
    import inspect

    parameter = inspect.signature(method).parameters.get(name)
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _describe(value: Any) -> Any:
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, np.ndarray | list | tuple):
        return np.asarray(value).tolist() if np.asarray(value).dtype.kind in "biuf" else repr(value)
    return repr(value)


class Run(StoredRun):
    """A stored run: lazy xarray views of its groups, its config, its restored model, and queries."""

    # ---- the model --------------------------------------------------------------------------------
    @cached_property
    def model(self) -> LabTask:
        """The trained task, rebuilt from the config and restored with torch's weights-only loading."""
        from nde_lab.restore import restore_task

        return restore_task(self.config, self.local_checkpoint_dir())

    # ---- queries (all logic in nde_lab.query.runs; these only delegate) ---------------------------------
    def predict(self, times: Any = None, **kwargs: Any) -> xr.Dataset:
        """Model trajectories at `times` (default: the stored grid); keywords depend on the family
        (`y0` for ODEs, `n` and `seed` for Bayesian and stochastic models)."""
        from nde_lab.query.runs import run_predict

        return run_predict(self, times, **kwargs)

    def sample(self, n: int, **kwargs: Any) -> xr.Dataset:
        """`n` new draws (paths, posterior draws or samples, by family) as a Dataset."""
        from nde_lab.query.runs import run_sample

        return run_sample(self, n, **kwargs)

    def log_prob(self, x: Any, **kwargs: Any) -> xr.DataArray:
        """Log-density in nats of points `x` of shape (n, dim) -> DataArray of shape (n,)."""
        from nde_lab.query.runs import run_log_prob

        return run_log_prob(self, x, **kwargs)

    def to_arviz(self) -> Any:
        """The run for ArviZ: `InferenceData` on ArviZ 0.2x, a `DataTree` on ArviZ 1.x (`nde_lab.interop`)."""
        from nde_lab.interop import to_arviz

        return to_arviz(self)

    def plot(self, kind: str | None = None, **kwargs: Any) -> Any:
        """A matplotlib Figure of this run: `kind` in `nde_lab.plot.KINDS` (trajectories, phase, density,
        images, training, trace, rank, pair, predictive); default: the family's first picture."""
        from nde_lab.plot import plot_run

        return plot_run(self, kind, **kwargs)

    # ---- Monte Carlo queries: each answers nde_lab.query.result's type (estimate, mcse, ci, ess, ...) ----
    def expect(self, fn: Callable[[xr.Dataset], xr.DataArray], **kwargs: Any) -> xr.Dataset:
        """E[fn(X)] with its honest Monte Carlo error (`nde_lab.query.runs.run_expect`).

        Keywords: `n` or `target_mcse`, `draws` ("sample": fresh draws from `run.sample`;
        "posterior": every stored posterior draw once), `batch`, `seed`, `max_draws`,
        `discretisation_error` (SDE runs: also estimate the bias from the solver's step by step
        halving), and the family's sampling keywords (`times`, `x0`, `method`, `dt`, ...).
        """
        from nde_lab.query.runs import run_expect

        return run_expect(self, fn, **kwargs)

    def prob(self, event: Callable[[xr.Dataset], xr.DataArray], **kwargs: Any) -> xr.Dataset:
        """P(event(X)) with a Wilson 95% interval; keywords as in `expect`."""
        from nde_lab.query.runs import run_prob

        return run_prob(self, event, **kwargs)

    def interval(self, fn: Callable[[xr.Dataset], xr.DataArray], **kwargs: Any) -> xr.Dataset:
        """Equal-tailed `level` interval of fn(X) over `n` draws, with the MCSE of each end."""
        from nde_lab.query.runs import run_interval

        return run_interval(self, fn, **kwargs)

    def quantile(self, fn: Callable[[xr.Dataset], xr.DataArray], q: float | list[float], **kwargs: Any) -> xr.Dataset:
        """Quantile(s) `q` of fn(X) over `n` draws, with the MCSE of each."""
        from nde_lab.query.runs import run_quantile

        return run_quantile(self, fn, q, **kwargs)


for _name in ("predict", "sample", "expect", "prob", "interval", "quantile"):
    setattr(Run, _name, saveable(getattr(Run, _name)))
