"""`Dataset.nde`: analysis verbs on stored trajectories and ensembles (registered on import of nde_lab)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from nde_lab.query.montecarlo import quantile_result
from nde_lab.query.result import mc_result

__all__ = ["NdeAccessor"]

DEFAULT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _ensemble_ess(y: xr.DataArray, dims: list[str]) -> xr.DataArray | float:
    """ESS per component: ArviZ's ESS for the mean over (chain, draw); the count for independent samples."""
    if "chain" in dims and "draw" in dims:
        from nde_lab.prob.diagnostics import ess_mean

        other = [d for d in y.dims if d not in dims]
        flat = y.transpose("chain", "draw", *other).values.reshape(y.sizes["chain"], y.sizes["draw"], -1)
        ess = np.array([ess_mean(flat[:, :, k]) for k in range(flat.shape[-1])]).reshape([y.sizes[d] for d in other])
        return y.isel(chain=0, draw=0, drop=True).copy(data=ess)
    return float(np.prod([y.sizes[d] for d in dims]))


def _quantiles(y: xr.DataArray, dims: list[str], probs: list[float], **provenance: object) -> xr.Dataset:
    """Quantile result over `dims`; over (chain, draw) each quantile's error uses the ESS of its indicator
    1{y <= q_p} (ArviZ's quantile MCSE), since tail indicators are less autocorrelated than y itself."""
    if not ("chain" in dims and "draw" in dims):
        return quantile_result(y, probs, dims=tuple(dims), **provenance)
    parts = []
    for p in probs:
        q = y.quantile(p, dim=dims).drop_vars("quantile")
        ess = _ensemble_ess((y <= q).astype(np.float64), dims)
        parts.append(quantile_result(y, [p], ess=ess, dims=tuple(dims), **provenance))
    return xr.concat(parts, dim="quantile", data_vars="different", compat="equals", combine_attrs="override")


def _sample_dims(ds: xr.Dataset | xr.DataArray) -> list[str]:
    dims = [d for d in ("sample", "chain", "draw") if d in ds.dims]
    if not dims:
        raise ValueError(f"no ensemble dimension ('sample' or 'chain'/'draw') in dims {list(ds.dims)}.")
    return dims


@xr.register_dataset_accessor("nde")
class NdeAccessor:
    """Verbs for path ensembles y (sample, time, state) and fitted trajectories y (time, state).

    Example:
        run.trajectories.nde.summary()            # mean, std, quantiles over samples
        run.trajectories.nde.band(0.9)            # lower/upper of the central 90% band
        run.trajectories.nde.error(run.observed)  # MAE/RMSE against observations, per state
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def _y(self, variable: str) -> xr.DataArray:
        if variable not in self._ds:
            raise KeyError(f"no variable {variable!r}; the dataset has {list(self._ds.data_vars)}.")
        return self._ds[variable]

    def summary(self, quantiles: Sequence[float] = DEFAULT_QUANTILES, *, variable: str = "y") -> xr.Dataset:
        """The ensemble mean as a Monte Carlo result (`estimate`, `mcse`, `ci_lower/upper`, `ess`) plus
        `mean` (= estimate), `std`, `quantiles` and their `quantiles_mcse`.

        Over (chain, draw) the error uses ArviZ's ESS for the mean (autocorrelation counts); over
        `sample` the draws are independent (ESS = n). Quantile errors come from the order-statistic
        bracket with the same ESS (`nde_lab.query.quantile_mcse`).
        """
        y = self._y(variable)
        dims = _sample_dims(y)
        n = int(np.prod([y.sizes[d] for d in dims]))
        ess = _ensemble_ess(y, dims)
        std = y.std(dims, ddof=1)
        mean = y.mean(dims)
        q = _quantiles(y, dims, list(quantiles))
        return mc_result(mean, std / np.sqrt(ess), n_draws=n, ess=ess, method="ensemble", draws=" x ".join(dims),
                         extra={"mean": mean, "std": std, "quantiles": q["estimate"], "quantiles_mcse": q["mcse"]})

    def band(self, level: float = 0.9, *, variable: str = "y") -> xr.Dataset:
        """The equal-tailed central `level` band: `lower` and `upper` over the ensemble dims, as a Monte
        Carlo quantile result (`estimate`/`mcse` along `quantile` for the two ends)."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}.")
        y = self._y(variable)
        dims = _sample_dims(y)
        q = _quantiles(y, dims, [(1 - level) / 2, (1 + level) / 2], draws=" x ".join(dims))
        q["lower"] = q["estimate"].isel(quantile=0, drop=True)
        q["upper"] = q["estimate"].isel(quantile=1, drop=True)
        return q.assign_attrs(level=level)

    def coverage(self, observed: xr.Dataset, level: float = 0.9, *, variable: str = "y") -> float:
        """Fraction of observations inside the central `level` band (interpolated to their times)."""
        band = self.band(level, variable=variable).interp(time=observed["time"].values)
        y = observed[variable]
        inside = (y >= band["lower"]) & (y <= band["upper"])
        return float(inside.mean())

    def error(self, observed: xr.Dataset, *, variable: str = "y") -> xr.Dataset:
        """MAE and RMSE per state of the trajectory (or ensemble mean) against observations.

        The trajectory is linearly interpolated to the observed times inside its time range.
        """
        y = self._y(variable)
        if any(d in y.dims for d in ("sample", "chain", "draw")):
            y = y.mean(_sample_dims(y))
        times = observed["time"].values
        inside = (times >= float(y["time"].min())) & (times <= float(y["time"].max()))
        if not inside.any():
            raise ValueError("no observation time lies inside the trajectory's time range.")
        predicted = y.interp(time=times[inside])
        residual = predicted - observed[variable].isel(time=np.flatnonzero(inside))
        return xr.Dataset(
            {"mae": np.abs(residual).mean("time"), "rmse": np.sqrt((residual**2).mean("time"))},
            attrs={"n_observations": int(inside.sum())},
        )
