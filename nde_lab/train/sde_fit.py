"""`SDEFitTask`: fit a parametric SDE to observed paths by maximum likelihood of their transitions."""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import xarray as xr
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from nde_lab.dynamics.sde_parametric import ParametricSDE
from nde_lab.errors import DataError, QueryError
from nde_lab.solvers.paths import PathSample, sample_paths
from nde_lab.solvers.registry import check_choice
from nde_lab.solvers.sde import SDESolution, SDESolverOptions
from nde_lab.train.base import LabTask
from nde_lab.train.param_groups import build_optimizer

if TYPE_CHECKING:
    from nde_lab.data.sde_data import PathsDataModule
    from nde_lab.store.schema import RunView as Run

__all__ = ["QUANTILES", "SDEFitTask", "paths_dataset", "solver_stats_dataset", "summary_dataset"]

#: Default quantiles of the `summary` group.
QUANTILES: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)


# ---- store helpers shared by the stochastic tasks ---------------------------------------------------
def paths_dataset(y: np.ndarray, times: np.ndarray, state_names: list[str], *, time_units: str = "1",
                  units: str = "1", attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """y (sample, time, state) as a Dataset with `time` and `state` coordinates."""
    if not np.isfinite(y).all():
        raise ValueError("paths_dataset: refusing to store non-finite paths (mask them first).")
    return xr.Dataset(
        {"y": (("sample", "time", "state"), np.asarray(y, dtype=np.float64), {"units": units})},
        coords={"sample": np.arange(y.shape[0]), "time": ("time", np.asarray(times, dtype=np.float64), {"units": time_units}),
                "state": list(state_names)},
        attrs=dict(attrs or {}),
    )


def summary_dataset(paths: xr.Dataset, quantiles: tuple[float, ...] | list[float] = QUANTILES) -> xr.Dataset:
    """mean, std (time, state) and quantiles (quantile, time, state) of `paths.y` over `sample`."""
    y = paths["y"]
    out = xr.Dataset(
        {"mean": y.mean("sample"), "std": y.std("sample", ddof=1) if y.sizes["sample"] > 1 else xr.zeros_like(y.mean("sample")),
         "quantiles": y.quantile(list(quantiles), dim="sample")},
        attrs={"n_samples": int(y.sizes["sample"]), "units": y.attrs.get("units", "1")},
    )
    out["mcse"] = out["std"] / np.sqrt(max(1, y.sizes["sample"]))
    out["mcse"].attrs["description"] = "Monte Carlo standard error of the mean (independent simulated paths)"
    return out


def solver_stats_dataset(solution: SDESolution | PathSample, options: SDESolverOptions, *, seed: int | None = None,
                         **extra: float) -> xr.Dataset:
    """The forward solve's statistics (nfe, steps, masked paths) as scalars, options in attrs."""
    s = solution.stats if isinstance(solution, SDESolution) else solution
    data = {"nfe_drift": s.nfe_drift, "nfe_diffusion": s.nfe_diffusion, "steps": s.steps,
            "masked_paths": s.masked_paths, **extra}
    seed = getattr(s, "seed", None) if seed is None else seed
    return xr.Dataset({k: ((), v) for k, v in data.items()},
                      attrs={"method": s.method, "dt": options.dt, "adaptive": options.adaptive,
                             "step": float(getattr(s, "step", options.dt)),
                             "on_nonfinite": options.on_nonfinite, "seed": -1 if seed is None else seed})


def _default_lbfgs(params: Any) -> torch.optim.Optimizer:
    return torch.optim.LBFGS(params, lr=1.0, max_iter=100, tolerance_grad=1e-9, tolerance_change=1e-12,
                             history_size=20, line_search_fn="strong_wolfe")


class SDEFitTask(LabTask):
    """Maximum likelihood of the observed transitions of a parametric SDE.

    The log-likelihood of a path observed at t_0 < ... < t_K is sum_k log p(y_{k+1} | y_k, dt_k):
    the exact transition density where the SDE has one (OU, GBM), the Euler-Maruyama Gaussian
    otherwise (accurate when the observation spacing is small against the dynamics' time scale).
    Standard errors come from the inverse observed Fisher information (Hessian of the negative
    log-likelihood in the parameter values) at the fit.

    Main arguments:
        sde: the model (`OrnsteinUhlenbeck`, `GeometricBrownianMotion` or a user `ParametricSDE`).
        transition: 'auto' (exact if available), 'exact' (error if not available) or 'euler'.

    Other arguments:
        solver: options of the stored simulated paths and of `Run.sample`.
        n_samples: simulated paths stored in `trajectories`.
        sampling_seed: Brownian seed of the stored paths (stored in root attrs).
        quantiles: quantiles of the `summary` group.
        optimizer: optimizer factory (default full-batch L-BFGS with strong-Wolfe line search).
    """

    model_family = "sde"

    def __init__(
        self,
        sde: ParametricSDE,
        transition: Literal["auto", "exact", "euler"] = "auto",
        solver: SDESolverOptions | None = None,
        n_samples: int = 200,
        sampling_seed: int = 0,
        quantiles: list[float] | None = None,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__()
        check_choice("model.transition", transition, ["auto", "exact", "euler"], error=ValueError)
        if not isinstance(sde, ParametricSDE):
            raise TypeError(f"model.sde must be a ParametricSDE (e.g. OrnsteinUhlenbeck), got {type(sde).__name__}.")
        if transition == "exact" and not sde.has_exact_transition:
            raise ValueError(f"model.transition='exact' but {type(sde).__name__} has no exact transition density; use 'euler' or 'auto'.")
        if n_samples < 1:
            raise ValueError(f"model.n_samples must be >= 1, got {n_samples}.")
        # The fit runs in float64: transition likelihoods of series with large values (the Nile's
        # flows are ~1000) are too flat in float32 for L-BFGS to converge in the location parameter.
        self.sde = sde.double()
        self.exact = transition != "euler" and sde.has_exact_transition
        self.solver = solver or SDESolverOptions()
        self.n_samples, self.sampling_seed = n_samples, sampling_seed
        self.quantiles = tuple(quantiles or QUANTILES)
        if not all(0.0 <= q <= 1.0 for q in self.quantiles):
            raise ValueError(f"model.quantiles must lie in [0, 1], got {list(self.quantiles)}.")
        self.optimizer_factory = optimizer or _default_lbfgs

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.optimizer_factory, self)

    # ---- likelihood ---------------------------------------------------------------------------------
    def log_likelihood(self, t: Tensor, y: Tensor, params: dict[str, Tensor] | None = None) -> Tensor:
        """Sum over transitions of log p(y_{k+1} | y_k), per path: t (T,), y (B, T, D) -> (B,)."""
        if y.shape[-1] != self.sde.state_dim:
            raise DataError(f"the data has {y.shape[-1]} state columns but model.sde.state_dim is {self.sde.state_dim}.")
        # ParametricSDE's own method is the Euler-Maruyama density, whatever the subclass overrides.
        lp = self.sde.transition_log_prob if self.exact else partial(ParametricSDE.transition_log_prob, self.sde)
        b, n_t, d = y.shape
        dt = t[1:] - t[:-1]
        if self.sde.time_homogeneous:
            y0, y1 = y[:, :-1].reshape(-1, d), y[:, 1:].reshape(-1, d)
            return lp(t[0], y0, dt.repeat(b), y1, params=params).reshape(b, n_t - 1).sum(1)
        return torch.stack([lp(t[k], y[:, k], dt[k], y[:, k + 1], params=params) for k in range(n_t - 1)], 1).sum(1)

    def _nll(self, batch: dict[str, Tensor]) -> Tensor:
        keep = batch["observed"]
        return -self.log_likelihood(batch["t"][keep].double(), batch["y"][:, keep].double()).mean()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._nll(batch)
        self.log("train_nll", loss, prog_bar=True, batch_size=batch["y"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.log("val_nll", self._nll(batch), batch_size=batch["y"].shape[0])

    def fisher_std_errors(self, t: Tensor, y: Tensor) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:
        """Values, standard errors (from the inverse observed information) and total log-likelihood, in float64."""
        values = {k: v.detach().double() for k, v in self.sde.constrained().items()}
        names = self.sde.learnable_names()
        sizes = [values[n].numel() for n in names]
        flat = torch.cat([values[n] for n in names])
        t64, y64 = t.double(), y.double()

        def nll(theta: Tensor) -> Tensor:
            params = dict(values)
            params.update(dict(zip(names, torch.split(theta, sizes), strict=True)))
            return -self.log_likelihood(t64, y64, params=params).sum()

        with torch.enable_grad():
            hess = torch.autograd.functional.hessian(nll, flat)
            total = -float(nll(flat))
        fitted = {n: values[n].numpy() for n in names}
        try:
            var = torch.diagonal(torch.linalg.inv(hess))
        except RuntimeError:
            return fitted, {}, total
        if not bool(torch.isfinite(var).all() and (var > 0).all()):
            return fitted, {}, total
        errors = dict(zip(names, (s.numpy() for s in torch.split(var.sqrt(), sizes)), strict=True))
        return fitted, errors, total

    # ---- sampling -----------------------------------------------------------------------------------
    def simulate(self, y0: Tensor, times: np.ndarray, seed: int, method: Literal["auto", "exact", "solver"] = "auto",
                 dt: float | None = None) -> PathSample:
        """Paths (n, T, D) of the fitted SDE from y0 (n, D) at `times`, seeded; masked paths are NaN.

        method: 'auto' samples exact transitions where the model has them (OU, GBM), else the solver
        on a grid refined so every output time is a step end; 'exact' requires them; 'solver' never uses them.
        dt: the solver's largest step (time units) instead of the recipe's `solver.dt`.
        """
        check_choice("method", method, ["auto", "exact", "solver"], error=QueryError)
        if method == "exact" and not self.sde.has_exact_transition:
            raise QueryError(f"method='exact' but {type(self.sde).__name__} has no exact transition; use 'auto' or 'solver'.")
        options = self.solver
        if dt is not None:
            if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and math.isfinite(dt) and dt > 0):
                raise QueryError(f"dt must be a positive number of time units, got {dt!r}.")
            options = dataclasses.replace(self.solver, dt=float(dt))
        return sample_paths(self.sde, y0, times, options=options, seed=seed, exact=method != "solver")

    @staticmethod
    def _initial_states(observed: np.ndarray, n: int, dtype: torch.dtype) -> Tensor:
        """Sample i starts from the first observation of observed path i mod N: (n, D)."""
        first = observed[:, 0, :]
        return torch.as_tensor(first[np.arange(n) % first.shape[0]], dtype=dtype)

    # ---- the run store ------------------------------------------------------------------------------
    def run_outputs(self, datamodule: PathsDataModule | None) -> dict[str, xr.Dataset]:
        from nde_lab.data.sde_data import PathsDataModule

        if not isinstance(datamodule, PathsDataModule):
            return {}
        observed = datamodule.observed_dataset()
        dtype = next(self.sde.parameters()).dtype
        keep = datamodule.observed
        t_obs = torch.as_tensor(datamodule.times[keep])
        y_train = torch.as_tensor(datamodule.values[datamodule.train_index][:, keep])
        values, errors, loglik = self.fisher_std_errors(t_obs, y_train)
        names = self.sde.learnable_names()
        parameters = xr.Dataset(
            {"value": (("parameter", "state"), np.stack([values[n] for n in names]))},
            coords={"parameter": names, "state": list(datamodule.state_names)},
            attrs={"log_likelihood": loglik, "n_paths": int(y_train.shape[0]), "n_transitions": int(y_train.shape[0] * (y_train.shape[1] - 1)),
                   "transition_density": "exact" if self.exact else "euler-maruyama", "sde": type(self.sde).__name__},
        )
        if errors:
            parameters["std_error"] = (("parameter", "state"), np.stack([errors[n] for n in names]))
            parameters["std_error"].attrs["method"] = "inverse observed Fisher information (Hessian of the NLL in the values)"
        else:
            parameters.attrs["std_error_note"] = "observed information not positive definite at the fit: no standard errors"
        y0 = self._initial_states(datamodule.values, self.n_samples, dtype)
        sol = self.simulate(y0, datamodule.times, self.sampling_seed)
        paths = paths_dataset(sol.y if sol.finite.all() else sol.y[sol.finite], datamodule.times, datamodule.state_names,
                              time_units=datamodule.time_units, units=datamodule.units,
                              attrs={"seed": self.sampling_seed, "kind": "simulated from the fitted SDE",
                                     "method": sol.method, "step": sol.step})
        return {"observed_data": observed, "parameters": parameters, "trajectories": paths,
                "summary": summary_dataset(paths, self.quantiles),
                "solver_stats": solver_stats_dataset(sol, self.solver, seed=self.sampling_seed)}

    def run_attrs(self) -> dict[str, Any]:
        return {"sampling_seed": self.sampling_seed, "solver_method": self.solver.method or "euler"}

    # ---- queries ------------------------------------------------------------------------------------
    def query_sample(self, run: Run, n: int, times: Any = None, seed: int | None = None, x0: Any = None,
                     method: Literal["auto", "exact", "solver"] = "auto", dt: float | None = None) -> xr.Dataset:
        """`n` new paths (sample, time, state) of the fitted SDE.

        times: output times (default the observed times; paths start at the first observed time, or at
        times[0] when x0 is given), each one a step end (never interpolated); seed: root seed (default
        the run's `sampling_seed`, which regenerates the stored paths); x0: initial state(s) (n, D) or
        (D,) (default the observed initial states, cycled); method: 'auto' (exact transitions for
        OU/GBM, else the solver), 'exact' or 'solver'; dt: the solver's largest step instead of the
        recipe's (what `expect(..., discretisation_error=True)` halves). Non-finite paths are dropped and counted.
        attrs record `seed`, `method`, `step` and `draws="simulation"`.
        """
        obs = run.group("observed_data")
        times = np.array(obs["time"].values if times is None else times, dtype=np.float64).ravel()  # writable copy
        seed = int(run.attrs.get("sampling_seed", self.sampling_seed)) if seed is None else int(seed)
        dtype = next(self.sde.parameters()).dtype
        y0 = self._initial_states(obs["y"].values, n, dtype) if x0 is None else torch.as_tensor(np.broadcast_to(np.asarray(x0, dtype=np.float64), (n, self.sde.state_dim)).copy(), dtype=dtype)
        t_first = float(obs["time"].values[0])
        if x0 is None and times[0] < t_first - 1e-12:
            raise QueryError(f"sample() times must not precede the first observation t={t_first:g} (or pass x0).")
        start = x0 is None and times[0] > t_first + 1e-12  # paths start at the observed initial time
        grid = np.concatenate([[t_first], times]) if start else times
        sol = self.simulate(y0, grid, seed, method, dt)
        y = sol.y if sol.finite.all() else sol.y[sol.finite]  # no copy when every path is finite
        y = y[:, 1:] if start else y
        return paths_dataset(y, times, list(obs["state"].values),
                             time_units=obs["time"].attrs.get("units", "1"), units=obs["y"].attrs.get("units", "1"),
                             attrs={"seed": seed, "n_requested": n, "masked_paths": sol.masked_paths,
                                    "method": sol.method, "step": sol.step, "draws": "simulation"})

    def query_predict(self, run: Run, times: np.ndarray | None, n: int = 1000, seed: int | None = None, x0: Any = None,
                      method: Literal["auto", "exact", "solver"] = "auto") -> xr.Dataset:
        """Monte Carlo predictive summary at `times`: mean with its `mcse`, std, quantiles (attrs: n_draws, seed, method, step)."""
        paths = self.query_sample(run, n, times=times, seed=seed, x0=x0, method=method)
        out = summary_dataset(paths, self.quantiles)
        out.attrs.update({"n_draws": int(paths.sizes["sample"]), **{k: paths.attrs[k] for k in ("seed", "method", "step", "draws")}})
        return out
