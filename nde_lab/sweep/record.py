"""The sweep record: one DataTree next to the runs, with every run's scalars over (swept keys, seed)
and their across-seed summary; `open_sweep` and `Sweep` read it back.

Schema (`<store>/<experiment>/_sweeps/<sweep_name>.zarr`, Zarr v3, written with the run store's writer):

    /            attrs: kind="nde_lab.sweep", sweep_name, experiment, store, recipe, recipe_text,
                 keys (dim -> dotted recipe key), seeds, seed_keys, conclusions (the recipe's specs),
                 status ("complete" or "incomplete"), n_points, n_complete, n_failed, created, updated
    /runs        run_name, run_path, status, failure (strings), seconds   dims (*grid dims, seed)
    /scalars     one float variable per scalar, NaN where a run failed    dims (*grid dims, seed)
    /summary     the same variables along `statistic`                      dims (*grid dims, statistic)

Grid dims are named by the swept key's last component (`width` for
`model.init_args.vector_field.init_args.width`), or the whole key with '_' for '.' where two keys share
a last component; coordinates are the grid values. Scalar names are `<source>.<name>`: `metrics.<m>`
(the last finite value of each logged metric), `parameters.<p>[.<state>]` and
`parameters.<p>[.<state>].std_error` (maximum-likelihood fits), `posterior_mean.<p>` and
`posterior_sd.<p>` (Bayesian fits), `summary.<s>` (other 0-d numbers of the summary group, e.g.
`coverage_90`), `solver_stats.<s>`, `attrs.<a>` (numeric root attrs of the run)
and `conclusions.<name>` (the recipe's conclusions). Statistics (over seeds, finite values only):
n, mean, sd (ddof 1), se = sd / sqrt(n), ci_low / ci_high = mean -/+ t(0.975, n-1) se, min, max.
"""

from __future__ import annotations

import json
import os
import shutil
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from nde_lab.errors import StoreError

__all__ = ["STATISTICS", "SWEEPS_DIR", "Sweep", "across_seed_summary", "open_sweep", "run_scalars", "write_record"]

SWEEPS_DIR = "_sweeps"
STATISTICS = ["n", "mean", "sd", "se", "ci_low", "ci_high", "min", "max"]
LEVEL = 0.95


def _last_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else float("nan")


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def run_scalars(tree: xr.DataTree) -> dict[str, float]:
    """Every scalar of one run (see the module docstring for the names)."""
    out: dict[str, float] = {}
    children = tree.children
    if "metrics" in children:
        ds = tree["metrics"].to_dataset()
        for name in ds.data_vars:
            if name != "step" and ds[name].ndim == 1:
                out[f"metrics.{name}"] = _last_finite(np.asarray(ds[name].values, dtype=float))
    if "parameters" in children:
        ds = tree["parameters"].to_dataset()
        for var, suffix in (("value", ""), ("std_error", ".std_error")):
            if var not in ds:
                continue
            da = ds[var]
            states = [str(s) for s in da["state"].values] if "state" in da.dims else [None]
            for p in da["parameter"].values:
                for s in states:
                    v = da.sel(parameter=p) if s is None else da.sel(parameter=p, state=s)
                    label = str(p) if s is None or len(states) == 1 else f"{p}.{s}"
                    out[f"parameters.{label}{suffix}"] = float(v.values)
    if "summary" in children:
        ds = tree["summary"].to_dataset()
        for var, prefix in (("mean", "posterior_mean"), ("sd", "posterior_sd")):
            if var in ds and ds[var].dims == ("parameter",):
                for p, v in zip(ds["parameter"].values, ds[var].values, strict=True):
                    out[f"{prefix}.{p}"] = float(v)
        out.update({f"summary.{name}": float(ds[name].values) for name in ds.data_vars
                    if ds[name].ndim == 0 and np.issubdtype(ds[name].dtype, np.number)})
    if "solver_stats" in children:
        ds = tree["solver_stats"].to_dataset()
        for name in ds.data_vars:
            if ds[name].ndim == 0 and np.issubdtype(ds[name].dtype, np.number):
                out[f"solver_stats.{name}"] = float(ds[name].values)
        out.update({f"solver_stats.{k}": float(v) for k, v in ds.attrs.items() if _numeric(v)})
    out.update({f"attrs.{k}": float(v) for k, v in tree.attrs.items() if _numeric(v) and k != "seed"})
    return out


def across_seed_summary(values: xr.DataArray, level: float = LEVEL) -> xr.DataArray:
    """Statistics of `values` over `seed` (finite values only) along a new `statistic` dim."""
    from scipy import stats

    x = np.moveaxis(np.asarray(values.values, dtype=float), values.get_axis_num("seed"), -1)
    finite = np.isfinite(x)
    n = finite.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        xs = np.where(finite, x, 0.0)
        mean = np.where(n > 0, xs.sum(-1) / np.maximum(n, 1), np.nan)
        dev = np.where(finite, x - mean[..., None], 0.0)
        sd = np.where(n > 1, np.sqrt((dev**2).sum(-1) / np.maximum(n - 1, 1)), np.nan)
        se = sd / np.sqrt(n)
        t = np.where(n > 1, stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)), np.nan)
        lo = np.where(n > 0, np.where(finite, x, np.inf).min(-1), np.nan)
        hi = np.where(n > 0, np.where(finite, x, -np.inf).max(-1), np.nan)
    out = np.stack([n.astype(float), mean, sd, se, mean - t * se, mean + t * se, lo, hi], axis=-1)
    dims = [d for d in values.dims if d != "seed"] + ["statistic"]
    coords = {d: values[d] for d in dims[:-1] if d in values.coords}
    return xr.DataArray(out, dims=dims, coords={**coords, "statistic": STATISTICS})


def build_record(attrs: dict[str, Any], coords: dict[str, list[Any]], rows: list[dict[str, Any]]) -> dict[str, xr.Dataset]:
    """The record's groups from one row per point: {"index": (..grid.., seed), "run": {...}, "scalars": {...}}."""
    dims = list(coords)
    shape = tuple(len(v) for v in coords.values())
    strings = {k: np.full(shape, "", dtype=object) for k in ("run_name", "run_path", "status", "failure")}
    strings["status"][...] = "missing"
    seconds = np.full(shape, np.nan)
    names = sorted({k for r in rows for k in r.get("scalars", {})})
    scalars = {k: np.full(shape, np.nan) for k in names}
    for row in rows:
        idx = tuple(row["index"])
        for k in strings:
            strings[k][idx] = str(row["run"].get(k, ""))
        seconds[idx] = row["run"].get("seconds", np.nan)
        for k, v in row.get("scalars", {}).items():
            scalars[k][idx] = v
    runs = xr.Dataset({k: (dims, v) for k, v in strings.items()}, coords=coords)
    runs["seconds"] = (dims, seconds, {"units": "s", "description": "wall time of the point in this sweep (0: resumed)"})
    scal = xr.Dataset({k: (dims, v) for k, v in scalars.items()}, coords=coords)
    summary = xr.Dataset({k: across_seed_summary(scal[k]) for k in names},
                         coords={d: coords[d] for d in dims if d != "seed"} | {"statistic": STATISTICS})
    summary.attrs.update(level=LEVEL, interval="mean -/+ t(0.5 + level/2, n - 1) * sd / sqrt(n) over seeds",
                         sd="ddof=1, finite values only")
    return {"runs": runs, "scalars": scal, "summary": summary}


def write_record(path: Path, attrs: dict[str, Any], groups: dict[str, xr.Dataset]) -> Path:
    """Write the record at `path` atomically (assembled hidden, then swapped in by renames)."""
    from nde_lab.store.writer import write_tree

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    old = path.with_name(f".{path.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    write_tree(groups, tmp, attrs)
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def _resolve(path: str | os.PathLike) -> Path:
    path = Path(path).expanduser()
    if path.suffix == ".zarr" and path.exists():
        return path
    sweeps = path / SWEEPS_DIR if (path / SWEEPS_DIR).is_dir() else path
    found = sorted(sweeps.glob("*.zarr"), key=lambda p: p.stat().st_mtime) if sweeps.is_dir() else []
    found = [p for p in found if not p.name.startswith(".")]
    if not found:
        raise StoreError(f"{str(path)!r} is not a sweep record: give <store>/<experiment>/{SWEEPS_DIR}/<name>.zarr "
                         "or an experiment directory holding one.")
    return found[-1]


def open_sweep(path: str | os.PathLike) -> Sweep:
    """Open a sweep record: the `.zarr` path, or an experiment directory (its newest sweep)."""
    return Sweep(_resolve(path))


class Sweep:
    """A stored sweep: the DataTree, its runs, scalars and summaries, and its conclusions."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r}, dims={dict(self.scalars.sizes)}, status={self.attrs.get('status')!r})"

    @cached_property
    def tree(self) -> xr.DataTree:
        return xr.open_datatree(self.path, engine="zarr", consolidated=False, zarr_format=3, decode_times=False)

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.tree.attrs)

    @property
    def runs(self) -> xr.Dataset:
        return self.tree["runs"].to_dataset()

    @property
    def scalars(self) -> xr.Dataset:
        return self.tree["scalars"].to_dataset()

    @property
    def summary(self) -> xr.Dataset:
        return self.tree["summary"].to_dataset()

    @property
    def keys(self) -> dict[str, str]:
        """Grid dim -> the dotted recipe key it sweeps."""
        return json.loads(self.attrs.get("keys", "{}"))

    def open_run(self, **where: Any):
        """The run of one point, selected by coordinates (`sweep.open_run(width=64, seed=2)`)."""
        from nde_lab.run import open_run

        path = self.runs["run_path"].sel(where).values
        if path.ndim:
            raise ValueError(f"select one point: give a coordinate for each of {list(self.runs.dims)}.")
        return open_run(str(path))

    def conclusion(self, name: str, *, tolerance: float | None = None) -> xr.Dataset:
        """A named conclusion over the grid: per-seed `value`, the across-seed statistics, the interval
        `width` and `robust` (width <= tolerance; the recipe's tolerance unless one is given here)."""
        var = f"conclusions.{name}"
        specs = json.loads(self.attrs.get("conclusions", "{}"))
        if var not in self.scalars:
            raise KeyError(f"sweep has no conclusion {name!r}; it has {sorted(specs)}.")
        tol = tolerance if tolerance is not None else specs.get(name, {}).get("tolerance")
        stats = self.summary[var]
        out = xr.Dataset({"value": self.scalars[var], **{s: stats.sel(statistic=s, drop=True) for s in STATISTICS}})
        out["width"] = out["ci_high"] - out["ci_low"]
        if tol is not None:
            out["robust"] = out["width"] <= float(tol)
        return out.assign_attrs(name=name, tolerance=tol if tol is not None else "none", level=LEVEL,
                                spec=json.dumps(specs.get(name, {})))
