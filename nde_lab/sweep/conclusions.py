"""Named conclusions a recipe declares (top-level `conclusions:`), each a scalar computed from a run.

    conclusions:
      theta_hat: {parameter: theta, tolerance: 0.1}            # parameters.theta, else posterior_mean.theta
      final_loss: {metric: train_loss, tolerance: 0.05}        # last finite value of a logged metric
      mae: {scalar: solver_stats.full_series_mae}              # any record scalar by its name
      divergences: {attr: divergences}                         # a numeric root attr of the run
      p_high: {prob: {var: y, time: 10.0, op: ">", value: 2.5}, n: 2000, tolerance: 0.05}
      fit_mae: {mae: {prediction: trajectories, reference: observed_data, var: y}}

`prob` estimates P(var(time) op value) with `run.prob` over `n` fresh draws (`time` nearest the stored
grid; `select` picks other dims, e.g. {state: x}); `mae` is the mean absolute difference of `var`
between two groups of the run, the prediction interpolated at the reference's times. `tolerance`
bounds the width of the across-seed 95% interval for the conclusion to be called robust.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import xarray as xr

from nde_lab.errors import RecipeError

__all__ = ["KINDS", "compute_conclusions", "validate_conclusions"]

KINDS = ("metric", "parameter", "scalar", "attr", "prob", "mae")
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_OPTIONS = {"tolerance", "n", "seed"}


def validate_conclusions(specs: Any) -> dict[str, dict[str, Any]]:
    """Check the recipe's `conclusions` mapping; RecipeError naming `conclusions.<name>` otherwise."""
    if specs is None:
        return {}
    if not isinstance(specs, dict):
        raise RecipeError(f"conclusions must be a mapping name -> spec, got {type(specs).__name__}.")
    for name, spec in specs.items():
        where = f"conclusions.{name}"
        if not isinstance(spec, dict):
            raise RecipeError(f"{where} must be a mapping like {{metric: train_loss, tolerance: 0.1}}, got {spec!r}.")
        kinds = [k for k in spec if k in KINDS]
        unknown = sorted(set(spec) - set(KINDS) - _OPTIONS)
        if len(kinds) != 1 or unknown:
            raise RecipeError(f"{where}: give exactly one of {list(KINDS)} (plus {sorted(_OPTIONS)}); got {sorted(spec)}.")
        tol = spec.get("tolerance")
        if tol is not None and not (isinstance(tol, (int, float)) and tol > 0):
            raise RecipeError(f"{where}.tolerance must be a positive number, got {tol!r}.")
        if "prob" in spec:
            q = spec["prob"]
            if not isinstance(q, dict) or not {"var", "op", "value"} <= set(q) or q.get("op") not in OPS:
                raise RecipeError(f"{where}.prob needs var, op (one of {list(OPS)}) and value (time optional); got {q!r}.")
        if "mae" in spec and not (isinstance(spec["mae"], dict) and {"prediction", "reference"} <= set(spec["mae"])):
            raise RecipeError(f"{where}.mae needs prediction and reference group names (var optional, default y).")
    return specs


def _from_scalars(name: str, spec: dict[str, Any], scalars: dict[str, float]) -> float:
    if "metric" in spec:
        candidates = [f"metrics.{spec['metric']}"]
    elif "parameter" in spec:
        candidates = [f"parameters.{spec['parameter']}", f"posterior_mean.{spec['parameter']}"]
    elif "attr" in spec:
        candidates = [f"attrs.{spec['attr']}", f"solver_stats.{spec['attr']}"]
    else:
        candidates = [str(spec["scalar"])]
    for key in candidates:
        if key in scalars:
            return scalars[key]
    raise KeyError(f"conclusions.{name}: the run has none of {candidates}; it has {sorted(scalars)}.")


def _prob(run: Any, spec: dict[str, Any]) -> float:
    q = spec["prob"]
    op, var, value = OPS[q["op"]], q["var"], float(q["value"])

    def event(ds: xr.Dataset) -> xr.DataArray:
        da = ds[var]
        if "time" in da.dims and q.get("time") is not None:
            da = da.sel(time=float(q["time"]), method="nearest")
        elif "time" in da.dims:
            da = da.isel(time=-1)
        da = da.sel(q.get("select", {}))
        extra = [d for d in da.dims if d != "sample"]
        if any(da.sizes[d] != 1 for d in extra):
            raise ValueError(f"prob conclusion: {var} keeps dims {extra}; pick one with select: {{dim: label}}.")
        return op(da.squeeze(extra, drop=True), value)

    return float(run.prob(event, n=int(spec.get("n", 2000)), seed=int(spec.get("seed", 0)))["estimate"])


def _mae(run: Any, spec: dict[str, Any]) -> float:
    m = spec["mae"]
    var = m.get("var", "y")
    pred, ref = run.group(m["prediction"])[var], run.group(m["reference"])[var]
    if "time" in pred.dims and "time" in ref.dims:
        pred = pred.interp(time=ref["time"].values)
    return float(np.abs(pred.values - ref.values).mean())


def compute_conclusions(specs: dict[str, dict[str, Any]], run_dir: str, scalars: dict[str, float]) -> dict[str, float]:
    """Each conclusion's value for one complete run (NaN, with a message, where it cannot be computed)."""
    import sys

    out: dict[str, float] = {}
    run = None
    for name, spec in specs.items():
        try:
            if "prob" in spec or "mae" in spec:
                if run is None:
                    from nde_lab.run import open_run

                    run = open_run(run_dir)
                out[name] = _prob(run, spec) if "prob" in spec else _mae(run, spec)
            else:
                out[name] = _from_scalars(name, spec, scalars)
        except Exception as err:  # one bad conclusion must not lose the sweep's record
            print(f"nde-lab sweep: conclusion {name!r} of {run_dir}: {type(err).__name__}: {err}", file=sys.stderr)
            out[name] = float("nan")
    return out
