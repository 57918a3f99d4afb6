"""Posterior draws -> xarray groups in ArviZ's layout (posterior, predictive, log_likelihood, summary)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from nde_lab.prob.diagnostics import ess_bulk, rhat
from nde_lab.prob.programs import OBS, ProbProgram

__all__ = [
    "QUANTILES",
    "draws_dataset",
    "flatten_draws",
    "log_likelihood_dataset",
    "observed_dataset",
    "predictive_dataset",
    "sample_stats_dataset",
    "summary_dataset",
]

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _np(x: Tensor) -> np.ndarray:
    return x.detach().cpu().to(torch.float64).numpy()


def draws_dataset(program: ProbProgram, draws: dict[str, Tensor], *, attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """Parameter draws shaped (chain, draw, *event) -> Dataset with dims ("chain", "draw", *param_dims)."""
    data_vars = {}
    some = next(iter(draws.values()))
    coords: dict[str, Any] = {"chain": np.arange(some.shape[0]), "draw": np.arange(some.shape[1])}
    for name in program.parameter_names:
        dims = ("chain", "draw", *program.param_dims(name))
        data_vars[name] = (dims, _np(draws[name]))
    for dim, values in program.param_coords().items():
        if any(dim in v[0] for v in data_vars.values()):
            coords[dim] = values
    return xr.Dataset(data_vars, coords=coords, attrs=attrs or {})


def flatten_draws(ds: xr.Dataset, names: list[str]) -> tuple[dict[str, Tensor], tuple[int, int]]:
    """(chain, draw, ...) variables -> tensors with one leading dim of chain*draw, and (chain, draw)."""
    out = {}
    shape = (ds.sizes["chain"], ds.sizes["draw"])
    for name in names:
        arr = ds[name].transpose("chain", "draw", ...).values
        out[name] = torch.as_tensor(arr.reshape(shape[0] * shape[1], *arr.shape[2:]), dtype=torch.get_default_dtype())
    return out, shape


def _chunks(params: dict[str, Tensor], chunk: int):
    n = next(iter(params.values())).shape[0]
    for start in range(0, n, chunk):
        yield {k: v[start:start + chunk] for k, v in params.items()}


def predictive_dataset(program: ProbProgram, params: dict[str, Tensor], shape: tuple[int, int], *,
                       x: Tensor | None = None, chunk: int = 1024, seed: int = 0, include_mean: bool = True
                       ) -> xr.Dataset:
    """y ~ p(y | params) at inputs x for flattened draws -> `y` (chain, draw, *obs_dims) (+ `mu`, the
    noise-free prediction). One batched solve per chunk of draws."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    ys, mus = [], []
    with torch.no_grad():
        for part in _chunks(params, chunk):
            d = program.observation_dist(part, x)
            ys.append(d.sample())
            mus.append(program.predict(part, x)[0])
    torch.random.set_rng_state(gen_state)
    y = torch.cat(ys).reshape(*shape, *ys[0].shape[1:])
    dims = ("chain", "draw", *program.obs_dims)
    coords = {"chain": np.arange(shape[0]), "draw": np.arange(shape[1]), **program.obs_coords(x)}
    data_vars = {OBS: (dims, _np(y))}
    if include_mean:
        data_vars["mu"] = (dims, _np(torch.cat(mus).reshape(y.shape)))
    return xr.Dataset(data_vars, coords=coords)


def log_likelihood_dataset(program: ProbProgram, params: dict[str, Tensor], shape: tuple[int, int], *,
                           chunk: int = 1024) -> xr.Dataset:
    """Pointwise log p(y_i | draw) -> `y` (chain, draw, *obs_dims)."""
    with torch.no_grad():
        parts = [program.pointwise_log_likelihood(p) for p in _chunks(params, chunk)]
    ll = torch.cat(parts).reshape(*shape, *parts[0].shape[1:])
    dims = ("chain", "draw", *program.obs_dims)
    coords = {"chain": np.arange(shape[0]), "draw": np.arange(shape[1]), **program.obs_coords()}
    return xr.Dataset({OBS: (dims, _np(ll))}, coords=coords)


def observed_dataset(program: ProbProgram) -> xr.Dataset:
    """The data the posterior was conditioned on: `y` (*obs_dims)."""
    data = program.data
    attrs = {k: v for k, v in getattr(data, "attrs", {}).items() if isinstance(v, (str, int, float))}
    ds = xr.Dataset({OBS: (program.obs_dims, _np(program.observed))}, coords=program.obs_coords(), attrs=attrs)
    if "time" in ds.coords:
        # "X since Y" would make xarray decode the coordinate as CF datetimes: store unit and origin apart
        unit, _, origin = str(getattr(data, "time_units", "")).partition(" since ")
        ds["time"].attrs.update({"units": unit, **({"origin": origin} if origin else {})})
        ds[OBS].attrs["units"] = getattr(data, "value_units", "")
    if hasattr(data, "feature_names"):
        ds["x"] = (("obs", "feature"), _np(data.x))
        ds = ds.assign_coords(feature=list(data.feature_names))
    return ds


def sample_stats_dataset(stats: dict[str, np.ndarray], *, attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """Per-draw sampler statistics (chain, draw): diverging, acceptance_rate, step_size, tree_depth, n_steps."""
    some = next(iter(stats.values()))
    coords = {"chain": np.arange(some.shape[0]), "draw": np.arange(some.shape[1])}
    return xr.Dataset({k: (("chain", "draw"), v) for k, v in stats.items()}, coords=coords, attrs=attrs or {})


def _labels(name: str, da: xr.DataArray) -> list[tuple[str, dict]]:
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    if not extra:
        return [(name, {})]
    out = []
    for idx in np.ndindex(*(da.sizes[d] for d in extra)):
        sel = {d: i for d, i in zip(extra, idx, strict=True)}
        label = ", ".join(str(da[d].values[i]) if d in da.coords else str(i) for d, i in sel.items())
        out.append((f"{name}[{label}]", sel))
    return out


def summary_dataset(posterior: xr.Dataset, *, quantiles: tuple[float, ...] = QUANTILES) -> xr.Dataset:
    """mean, sd (ddof=1), quantiles, r_hat (rank-normalised split) and ess_bulk per scalar parameter.

    Dims: ("parameter",) with ArviZ-style labels ("alpha", "z_init[hare]"), quantiles along "quantile".
    """
    labels, rows = [], []
    for name in posterior.data_vars:
        da = posterior[name].transpose("chain", "draw", ...)
        for label, sel in _labels(name, da):
            x = da.isel(sel).values.astype(float)  # (chain, draw)
            labels.append(label)
            rows.append((x.mean(), x.std(ddof=1), np.quantile(x, quantiles), rhat(x), ess_bulk(x)))
    return xr.Dataset(
        {
            "mean": (("parameter",), np.array([r[0] for r in rows])),
            "sd": (("parameter",), np.array([r[1] for r in rows])),
            "quantiles": (("parameter", "quantile"), np.array([r[2] for r in rows])),
            "r_hat": (("parameter",), np.array([r[3] for r in rows])),
            "ess_bulk": (("parameter",), np.array([r[4] for r in rows])),
        },
        coords={"parameter": labels, "quantile": list(quantiles)},
        attrs={"r_hat": "rank-normalised split R-hat (Vehtari et al. 2021), ArviZ's definition",
               "ess_bulk": "bulk effective sample size (Vehtari et al. 2021), ArviZ's definition"},
    )
