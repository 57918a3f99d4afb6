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
from typing import TYPE_CHECKING, Any, Literal

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

    def to_arviz(self) -> Any:
        """The run for ArviZ: `InferenceData` on ArviZ 0.2x, a `DataTree` on ArviZ 1.x (`nde_lab.interop`)."""
        from nde_lab.interop import to_arviz

        return to_arviz(self)

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


for _name in ("predict", "sample", "expect", "prob", "interval"):
    setattr(Run, _name, saveable(getattr(Run, _name)))
