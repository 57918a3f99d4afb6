"""Each model family's headline numbers: one table, read by `list_runs`, `nde-lab runs/show` and the
closing summary of `nde-lab fit`.

A family lists the numbers a researcher looks at first; the first one that a run has is its *headline
metric* (one column of `list_runs`). Numbers are read from the stored run only (xarray/zarr, no torch).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr

__all__ = ["HEADLINES", "Headline", "headline_metric", "headline_numbers", "parameter_estimates", "run_reader"]

#: reads one group of a run as a Dataset, or None when the run has no such group
GroupReader = Callable[[str], "xr.Dataset | None"]


@dataclass(frozen=True)
class Headline:
    """One headline number: `label` (as printed), where it is stored and how it is reduced.

    `source` is `"attr"` (a root attr named `name`), or a group name with variable `name`;
    `reduce` is `last` (last finite entry, for training curves along `epoch`), `max`, `min` or
    `value` (a scalar variable, or else a group attr named `name`), or `baseline` (the mean absolute
    error of predicting the variable's mean over `time`: the trivial baseline a fit must beat).
    """

    label: str
    source: str
    name: str
    reduce: Literal["last", "max", "min", "value", "baseline"] = "last"

    def read(self, attrs: dict[str, Any], group: GroupReader) -> float | None:
        if self.source == "attr":
            return _number(attrs.get(self.name))
        ds = group(self.source)
        if ds is None:
            return None
        if self.name not in ds.data_vars:
            return _number(ds.attrs.get(self.name)) if self.reduce == "value" else None
        if self.reduce == "baseline":
            data = ds[self.name]
            return _number(abs(data - data.mean("time")).mean()) if "time" in data.dims else None
        values = np.asarray(ds[self.name].values, dtype=float).ravel()
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            return None
        return float({"last": finite[-1], "max": finite.max(), "min": finite.min(), "value": finite[-1]}[self.reduce])


_BAYES = (Headline("max R-hat", "summary", "r_hat", "max"), Headline("min bulk ESS", "summary", "ess_bulk", "min"))

#: model family -> its headline numbers, most important first (the first present is the headline metric)
HEADLINES: dict[str, tuple[Headline, ...]] = {
    "neural_ode": (
        Headline("full-series MAE", "solver_stats", "full_series_mae", "value"),
        Headline("baseline MAE (predict the mean)", "observed_data", "y", "baseline"),
        Headline("val MAE", "metrics", "val_mae"),
        Headline("train loss", "metrics", "train_loss"),
    ),
    "sde": (Headline("train NLL", "metrics", "train_nll"), Headline("val NLL", "metrics", "val_nll")),
    "latent_sde": (
        Headline("val ELBO", "metrics", "val_elbo"),
        Headline("train ELBO", "metrics", "train_elbo"),
        Headline("90% band coverage", "summary", "coverage_90", "value"),
    ),
    "bayes_fast": (Headline("Pareto k", "attr", "pareto_k"), Headline("importance ESS", "attr", "ess_importance"), *_BAYES),
    "bayes_svi": (Headline("max R-hat", "summary", "r_hat", "max"), Headline("ELBO loss", "metrics", "elbo_loss"),
                  _BAYES[1]),
    "bayes_nuts": _BAYES,
    "bayes_neural_ode": (Headline("90% band coverage", "attr", "coverage_90"), *_BAYES,
                         Headline("ELBO loss", "metrics", "elbo_loss")),
    "flow": (Headline("val NLL (nats)", "metrics", "val_nll"), Headline("train NLL (nats)", "metrics", "train_nll"),
             Headline("density integral", "density", "integral", "value")),
    "cnf": (Headline("val NLL (nats)", "metrics", "val_nll"), Headline("train NLL (nats)", "metrics", "train_nll"),
            Headline("density integral", "density", "integral", "value")),
    "vae": (Headline("val ELBO (nats)", "metrics", "val_elbo"), Headline("val IWAE (nats)", "metrics", "val_iwae"),
            Headline("independent-pixel NLL", "metrics", "baseline_nll")),
}

#: for families not in the table: the usual training-curve names
_FALLBACK = (Headline("val loss", "metrics", "val_loss"), Headline("train loss", "metrics", "train_loss"),
             Headline("loss", "metrics", "loss"))


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def headline_numbers(attrs: dict[str, Any], group: GroupReader) -> dict[str, float]:
    """Every headline number the run has, in the family's order: {label: value}."""
    family = str(attrs.get("model_family", "unknown"))
    numbers = {}
    for item in HEADLINES.get(family, _FALLBACK):
        value = item.read(attrs, group)
        if value is not None:
            numbers[item.label] = value
    return numbers


def headline_metric(attrs: dict[str, Any], group: GroupReader) -> tuple[str, float]:
    """The run's headline metric `(label, value)`; `("", nan)` when it has none (a failed run)."""
    numbers = headline_numbers(attrs, group)
    return next(iter(numbers.items()), ("", math.nan))


def parameter_estimates(group: GroupReader) -> dict[str, tuple[float, float]]:
    """Fitted parameters with their standard errors, {name: (value, std_error)} (SDE maximum likelihood)."""
    ds = group("parameters")
    if ds is None or "value" not in ds or "parameter" not in ds.dims:
        return {}
    value = ds["value"]
    error = ds["std_error"] if "std_error" in ds else xr.full_like(value, np.nan)
    if value.sizes.get("state") == 1:
        value, error = value.squeeze("state", drop=True), error.squeeze("state", drop=True)
    out = {}
    for name in value["parameter"].values:
        v, e = value.sel(parameter=name), error.sel(parameter=name)
        for idx in np.ndindex(*v.shape):
            suffix = ",".join(str(v[d].values[i]) for d, i in zip(v.dims, idx, strict=True))
            out[f"{name}[{suffix}]" if suffix else str(name)] = (float(v.values[idx]), float(e.values[idx]))
    return out


def run_reader(run: Any) -> GroupReader:
    """A `GroupReader` over an opened run (anything with `groups` and `group(name)`, e.g. `open_run(...)`)."""
    groups = set(run.groups)
    return lambda name: run.group(name) if name in groups else None
