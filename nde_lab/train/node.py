"""`NeuralODETask`: fit a vector field to an observed series by solving through it (neural ODE)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import xarray as xr
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from nde_lab.data.trajectory import TrajectoryDataModule
from nde_lab.dynamics.base import VectorField
from nde_lab.errors import DataError
from nde_lab.solvers.ode import ODESolverOptions, SolverStats, solve_ode
from nde_lab.solvers.registry import check_choice
from nde_lab.train.base import LabTask
from nde_lab.train.param_groups import build_optimizer

if TYPE_CHECKING:
    from nde_lab.store.schema import RunView as Run

__all__ = ["NeuralODETask"]

Loss = Literal["mse", "l1", "gaussian_nll"]


class NeuralODETask(LabTask):
    """Fit dy/dt = f(t, y) to a series: windows solved from their first observation, compared by `loss`.

    The state is standardised per coordinate (mean and scale of the training series are kept as
    buffers, so a restored model predicts in data units). Training uses random sub-windows (batched
    in one solve when windows share their spacing); validation solves the whole series from its
    first observation and logs the mean absolute error in data units (`val_mae`).

    Main arguments:
        vector_field: the right-hand side (any `VectorField`, given by class_path in a recipe).
        solver: method, tolerances, step and adjoint of every solve.
        loss: "mse", "l1" or "gaussian_nll" (a learned noise scale per state coordinate).

    Other arguments:
        optimizer: optimizer factory (class_path + init_args in a recipe; default Adam, lr 1e-3).
        scheduler: optional learning-rate schedule, stepped after every optimizer step.
        standardize: fit in standardised coordinates (per-state mean and scale of the series);
            turn off when the field's structure lives in data units (the spiral's cubic field).
        output_points: points of the stored fitted trajectory.
        extrapolate: stored trajectory runs past the last observation by this fraction of the
            observed span (0: no extrapolation horizon).
    """

    model_family = "neural_ode"

    def __init__(
        self,
        vector_field: VectorField,
        solver: ODESolverOptions | None = None,
        loss: Loss = "mse",
        optimizer: OptimizerCallable = torch.optim.Adam,
        scheduler: LRSchedulerCallable | None = None,
        standardize: bool = True,
        output_points: int = 500,
        extrapolate: float = 0.0,
    ) -> None:
        super().__init__()
        check_choice("model.loss", loss, ["mse", "l1", "gaussian_nll"], error=ValueError)
        if not isinstance(vector_field, nn.Module):
            raise TypeError(f"model.vector_field must be an nn.Module vector field, got {type(vector_field).__name__}.")
        self.vector_field = vector_field
        self.solver = solver or ODESolverOptions()
        self.loss_name = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.standardize = standardize
        self.output_points = output_points
        self.extrapolate = extrapolate
        dim = vector_field.dim
        self.register_buffer("data_loc", torch.zeros(dim))
        self.register_buffer("data_scale", torch.ones(dim))
        self.register_buffer("t0", torch.zeros(()))
        self.log_noise = nn.Parameter(torch.full((dim,), -2.0)) if loss == "gaussian_nll" else None
        self.train_nfe = 0
        self._evenly_sampled = False  # set from the data in `setup`: then every window shares its grid

    # ---- plumbing ---------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.optimizer_factory, self)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if isinstance(datamodule, TrajectoryDataModule) and stage == "fit":
            if datamodule.series.dim != self.vector_field.dim:
                raise DataError(
                    f"the data has {datamodule.series.dim} state columns {datamodule.state_names} but "
                    f"model.vector_field.init_args.dim is {self.vector_field.dim}; make them equal."
                )
            if self.standardize:
                loc, scale = datamodule.standardisation()
                self.data_loc.copy_(torch.as_tensor(loc))
                self.data_scale.copy_(torch.as_tensor(scale))
            self.t0.fill_(float(datamodule.series.times[0]))
            steps = np.diff(datamodule.series.times)
            self._evenly_sampled = bool(np.allclose(steps, steps[0], rtol=1e-9, atol=0.0))

    def _normalise(self, y: Tensor) -> Tensor:
        return (y - self.data_loc) / self.data_scale

    def _denormalise(self, z: Tensor) -> Tensor:
        return z * self.data_scale + self.data_loc

    # ---- the model ----------------------------------------------------------------------------------
    def trajectory(self, y0: Tensor, t: Tensor) -> tuple[Tensor, dict[str, Any]]:
        """Solve from y0 (data units, (*batch, D)) at absolute times t (T,) -> ((*batch, T, D) data units, stats)."""
        z, stats = self._solve_standardised(self._normalise(y0), t)
        return self._denormalise(z), stats.as_dict()

    def _solve_standardised(self, z0: Tensor, t: Tensor) -> tuple[Tensor, SolverStats]:
        """Solve in the fitted (standardised) coordinates: z0 (*batch, D) -> ((*batch, T, D), stats)."""
        solution = solve_ode(self.vector_field, self.vector_field.augment(z0), t, self.solver)
        return self.vector_field.project(solution.y).movedim(0, -2), solution.stats

    def _window_loss(self, times: Tensor, values: Tensor) -> tuple[Tensor, int]:
        observed = self._normalise(values)
        # Autonomous fields see the same relative grid in every window of an evenly sampled series:
        # one solve covers the batch. A time-dependent field needs each window's own clock.
        if not getattr(self.vector_field, "time_input", False) and (
            self._evenly_sampled or _same_relative_grid(times - times[:, :1])
        ):
            predicted, stats = self._solve_standardised(observed[:, 0], times[0])
            return self._standardised_loss(predicted, observed), stats.nfe
        losses, nfe = [], 0
        for t_window, z_window in zip(times, observed, strict=True):
            predicted, stats = self._solve_standardised(z_window[0], t_window)
            losses.append(self._standardised_loss(predicted, z_window))
            nfe += stats.nfe
        return torch.stack(losses).mean(), nfe

    def _loss(self, predicted: Tensor, observed: Tensor) -> Tensor:
        """The recipe's loss between paths in data units."""
        return self._standardised_loss(self._normalise(predicted), self._normalise(observed))

    def _standardised_loss(self, predicted: Tensor, observed: Tensor) -> Tensor:
        residual = predicted - observed
        if self.loss_name == "mse":
            return residual.pow(2).mean()
        if self.loss_name == "l1":
            return residual.abs().mean()
        variance = torch.exp(2 * self.log_noise)
        return 0.5 * (residual.pow(2) / variance + torch.log(2 * torch.pi * variance)).mean()

    # ---- Lightning hooks ------------------------------------------------------------------------------
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        times, values = batch
        loss, nfe = self._window_loss(times, values)
        self.train_nfe += nfe
        # Summed here and logged once per epoch: Lightning's per-step logging costs a measurable
        # share of a millisecond-scale step (docs/benchmarks.md).
        self._epoch_loss_sum = self._epoch_loss_sum + loss.detach()
        self._epoch_batches += 1
        self._epoch_nfe += nfe
        return loss

    def on_train_epoch_start(self) -> None:
        self._epoch_loss_sum, self._epoch_batches, self._epoch_nfe = torch.zeros((), device=self.device), 0, 0

    def on_train_epoch_end(self) -> None:
        if self._epoch_batches:
            self.log("train_loss", self._epoch_loss_sum / self._epoch_batches, prog_bar=True)
            self.log("train_nfe", float(self._epoch_nfe))

    def _evaluate(self, batch: tuple[Tensor, Tensor], prefix: str) -> None:
        times, values = batch
        predicted, stats = self.trajectory(values[0, 0], times[0])
        self.log(f"{prefix}_loss", self._loss(predicted, values[0]), prog_bar=True, batch_size=1)
        self.log(f"{prefix}_mae", (predicted - values[0]).abs().mean(), prog_bar=True, batch_size=1)
        self.log(f"{prefix}_nfe", float(stats["nfe"]), batch_size=1)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        times, values = batch
        return self.trajectory(values[0, 0], times[0])[0]

    # ---- the run store ----------------------------------------------------------------------------------
    def run_outputs(self, datamodule: TrajectoryDataModule | None) -> dict[str, xr.Dataset]:
        if not isinstance(datamodule, TrajectoryDataModule):
            return {}
        series = datamodule.series
        t_first, t_last = float(series.times[0]), float(series.times[-1])
        t_end = t_last + self.extrapolate * (t_last - t_first)
        grid = np.linspace(t_first, t_end, self.output_points)
        observed = _state_dataset(series.times, series.values, series.state_names, series.time_units)
        observed.attrs.update({"source": series.source, **series.attrs})
        y0 = torch.as_tensor(series.values[0], dtype=self.data_loc.dtype, device=self.device)
        fitted = self.query_predict(None, grid, y0=y0)
        fitted.attrs.update({"observed_until": t_last, "extrapolate": self.extrapolate})
        at_obs = self.query_predict(None, series.times, y0=y0)
        mae = float(np.abs(at_obs["y"].values - series.values).mean())
        stats = xr.Dataset(
            {
                "nfe": ((), fitted.attrs["nfe"]),
                "steps": ((), fitted.attrs["steps"]),
                "train_nfe_total": ((), self.train_nfe),
                "full_series_mae": ((), mae),
            },
            attrs={"method": self.solver.method, "rtol": self.solver.rtol, "atol": self.solver.atol,
                   "adjoint": self.solver.adjoint, "nfe_counts": "forward-pass vector-field evaluations"},
        )
        return {"observed_data": observed, "trajectories": fitted, "solver_stats": stats}

    def run_attrs(self) -> dict[str, Any]:
        return {"solver_method": self.solver.method}

    def query_predict(self, run: Run | None, times: np.ndarray | None, y0: Any = None, **kwargs: Any) -> xr.Dataset:
        """Solve the fitted field at `times` (default: the stored trajectory's grid) from `y0`.

        `y0` defaults to the first observation of the stored run. Returns a Dataset with `y`
        (time, state) in data units, attrs nfe/steps.
        """
        if kwargs:
            raise TypeError(f"predict() got unexpected arguments {sorted(kwargs)}; it takes times and y0.")
        if times is None:
            if run is None:
                raise ValueError("predict() needs times.")
            times = run.trajectories["time"].values
        times = np.asarray(times, dtype=np.float64)
        if y0 is None:
            if run is None:
                raise ValueError("predict() needs y0.")
            y0 = run.observed["y"].isel(time=0).values
        y0_t = torch.as_tensor(np.asarray(y0), dtype=self.data_loc.dtype, device=self.device)
        if y0_t.shape[-1] != self.vector_field.dim:
            raise ValueError(f"y0 must end in the state dimension {self.vector_field.dim}, got shape {tuple(y0_t.shape)}.")
        t = torch.as_tensor(times, dtype=self.data_loc.dtype, device=self.device)
        # Solve from the initial time t0 so that y0 is the state at the series' first time.
        starts_at_t0 = abs(float(t[0]) - float(self.t0)) < 1e-12
        grid = t if starts_at_t0 else torch.cat([self.t0.reshape(1).to(t), t])
        with torch.no_grad():
            path, stats = self.trajectory(y0_t, grid)
        if not starts_at_t0:
            path = path[..., 1:, :]
        names = run.observed["state"].values.tolist() if run is not None else _default_names(self, y0_t)
        return _state_dataset(times, path.cpu().numpy(), names, attrs=stats)


def _same_relative_grid(relative: Tensor) -> bool:
    """Whether all windows (rows) share their relative times, up to round-off of absolute times
    (float32 at t ~ 25 is ~2e-6; a thousandth of a spacing is far above that)."""
    spacing = float((relative[0, 1:] - relative[0, :-1]).abs().min())
    return bool(torch.allclose(relative, relative[:1].expand_as(relative), rtol=0.0, atol=1e-3 * spacing))


def _default_names(task: NeuralODETask, y0: Tensor) -> list[str]:
    datamodule = task.trainer.datamodule if task._trainer is not None else None
    if isinstance(datamodule, TrajectoryDataModule):
        return datamodule.state_names
    return [f"y{i + 1}" for i in range(y0.shape[-1])]


def _state_dataset(
    times: np.ndarray, values: np.ndarray, state_names: list[str], time_units: str = "1", attrs: dict | None = None
) -> xr.Dataset:
    """y with dims (..., time, state); leading batch dims become `sample` (`schema.observed_dataset`)."""
    from nde_lab.store.schema import observed_dataset

    return observed_dataset(values, times, state_names, time_units=time_units, attrs=attrs)
