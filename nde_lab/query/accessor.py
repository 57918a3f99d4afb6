"""`Dataset.nde`: analysis verbs on stored trajectories and ensembles (registered on import of nde_lab)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

__all__ = ["NdeAccessor"]

DEFAULT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


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
        """Mean, std, the mean's Monte Carlo standard error and quantiles over the ensemble dims."""
        y = self._y(variable)
        dims = _sample_dims(y)
        n = int(np.prod([y.sizes[d] for d in dims]))
        std = y.std(dims, ddof=1)
        return xr.Dataset(
            {"mean": y.mean(dims), "std": std, "mean_mcse": std / np.sqrt(n), "quantiles": y.quantile(list(quantiles), dim=dims)},
            attrs={"n_draws": n},
        )

    def band(self, level: float = 0.9, *, variable: str = "y") -> xr.Dataset:
        """The equal-tailed central `level` band: `lower` and `upper` over the ensemble dims."""
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level}.")
        y = self._y(variable)
        dims = _sample_dims(y)
        q = y.quantile([(1 - level) / 2, (1 + level) / 2], dim=dims)
        return xr.Dataset({"lower": q.isel(quantile=0, drop=True), "upper": q.isel(quantile=1, drop=True)}, attrs={"level": level})

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
