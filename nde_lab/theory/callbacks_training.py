"""Probes that follow the optimisation itself: coordinate check, linearised twin, pruning, function snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import xarray as xr
from torch import Tensor
from torch.func import functional_call, jacrev, jvp, vmap

from nde_lab.theory._common import as_function, flat_params, lr_factors
from nde_lab.theory.callbacks import TheoryProbe
from nde_lab.theory.curvature import half_mse
from nde_lab.theory.pruning import DEFAULT_AMOUNTS, pruning_curve

__all__ = ["CoordinateCheck", "FunctionSnapshot", "LinearizedProbe", "PruningProbe"]


class CoordinateCheck(TheoryProbe):
    """muP's coordinate check: per layer, the RMS size of the pre-activations h^l on the probe inputs
    (`activation_size`) and of their change since initialisation (`update_size`) at initialisation and
    after each of the first `n_steps` optimizer steps: group `coordinate_check` (step, layer).
    Under muP both stay of order one as width grows; under the standard parametrisation with a fixed
    learning rate the output's update grows with width (Yang et al. 2022, Fig. 5)."""

    group = "coordinate_check"

    def __init__(self, n_steps: int = 3, n_inputs: int = 32, module: str | None = None) -> None:
        super().__init__(1, module)
        self.n_steps, self.n_inputs = n_steps, n_inputs

    def _sizes(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        net = self.network(pl_module)
        if not hasattr(net, "preactivations"):
            raise TypeError(f"CoordinateCheck needs a lab MLP (with preactivations()), got {type(net).__name__}.")
        x = self.data(trainer)[0][: self.n_inputs].to(pl_module.device)
        with torch.no_grad():
            h = [t.double().cpu() for t in net.preactivations(x)]
        if not self.rows:
            self.h0 = h
        return {"activation_size": np.array([float(t.pow(2).mean().sqrt()) for t in h]),
                "update_size": np.array([float((t - t0).pow(2).mean().sqrt()) for t, t0 in zip(h, self.h0, strict=True)])}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows.append(self._sizes(trainer, pl_module))
        self.epochs.append(0)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step <= self.n_steps and trainer.global_step not in self.epochs:
            self.rows.append(self._sizes(trainer, pl_module))
            self.epochs.append(trainer.global_step)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def run_groups(self) -> dict[str, xr.Dataset]:
        if not self.rows:
            return {}
        ds = self._stack({"activation_size": ("layer",), "update_size": ("layer",)}).rename(epoch="step")
        ds = ds.assign_coords(layer=np.arange(ds.sizes["layer"]))
        ds.attrs["description"] = "RMS pre-activation size per layer and its change since init, per optimizer step"
        return {self.group: ds}


class LinearizedProbe(TheoryProbe):
    """Trains the first-order Taylor model f_lin(x; theta) = f(x; theta_0) + J(x; theta_0)(theta - theta_0)
    (`torch.func.jvp`) next to the network, on the same batches with plain SGD at the task's per-layer
    learning rates (Lee et al. 2019). Group `linearized` (epoch): `function_distance` (RMS of f - f_lin on the
    training inputs), `relative_function_distance` (over the RMS of f - f_0), `network_loss`, `linear_loss`."""

    group = "linearized"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        net = self.network(pl_module)
        self.theta0 = {k: v.clone() for k, v in flat_params(net).items()}
        self.theta = {k: v.clone().requires_grad_(True) for k, v in self.theta0.items()}
        lr, factors = float(getattr(pl_module, "lr", 0.1)), lr_factors(net)
        self.optimizer = torch.optim.SGD([{"params": [p], "lr": lr * factors[k]} for k, p in self.theta.items()],
                                         lr=lr, momentum=float(getattr(pl_module, "momentum", 0.0)))
        self._x_cached = self.data(trainer)[0].to(pl_module.device)
        with torch.no_grad():
            self._f0 = functional_call(net, self.theta0, (self._x_cached,))
        jac = vmap(jacrev(as_function(net)), (None, 0))(self.theta0, self._x_cached)  # (N, O, *shape) per tensor
        self._j0 = torch.cat([jac[k].flatten(2) for k in self.theta0], dim=2).flatten(0, 1)  # (N*O, P)
        super().on_train_start(trainer, pl_module)

    def _linear(self, net: torch.nn.Module, x: Tensor) -> Tensor:
        delta = {k: self.theta[k] - self.theta0[k] for k in self.theta}
        if x.data_ptr() == self._x_cached.data_ptr() and x.shape == self._x_cached.shape:
            # the full training set (full-batch GD): f_0 and J_0 were computed once at init
            flat = torch.cat([d.reshape(-1) for d in delta.values()])
            return self._f0 + (self._j0 @ flat).view_as(self._f0)
        f0, df = jvp(lambda p: functional_call(net, p, (x,)), (self.theta0,), (delta,))
        return f0 + df

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        x, y = batch
        with torch.enable_grad():
            self.optimizer.zero_grad()
            half_mse(self._linear(self.network(pl_module), x), y).backward()
            self.optimizer.step()

    def record(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> dict[str, Any]:
        net = self.network(pl_module)
        x, y = (t.to(pl_module.device) for t in self.data(trainer))
        with torch.no_grad():
            f, f_lin, f0 = net(x), self._linear(net, x), functional_call(net, self.theta0, (x,))
        distance = float((f - f_lin).pow(2).mean().sqrt())
        moved = float((f - f0).pow(2).mean().sqrt())
        return {"function_distance": distance, "relative_function_distance": distance / moved if moved > 0 else 0.0,
                "network_loss": float(half_mse(f, y)), "linear_loss": float(half_mse(f_lin, y))}

    def run_groups(self) -> dict[str, xr.Dataset]:
        if not self.rows:
            return {}
        ds = self._stack(dict.fromkeys(self.rows[0], ()))
        ds.attrs["description"] = "network vs its linearisation around init, trained side by side"
        return {self.group: ds}


class PruningProbe(TheoryProbe):
    """At the end of training: global magnitude pruning at `amounts` with the loss/MAE on the training set
    (and `test_loss`, `test_mae` on the DataModule's test set when it has one): group `pruning` (amount)."""

    group = "pruning"

    def __init__(self, amounts: Sequence[float] = DEFAULT_AMOUNTS, module: str | None = None) -> None:
        super().__init__(1, module)
        self.amounts = tuple(amounts)
        self.result: xr.Dataset | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        x, y = self.data(trainer)
        result = pruning_curve(self.network(pl_module), x, y, amounts=self.amounts)
        dm = trainer.datamodule
        if hasattr(dm, "x_test"):
            test = pruning_curve(self.network(pl_module), dm.x_test, dm.y_test, amounts=self.amounts)
            result["test_loss"], result["test_mae"] = test["loss"], test["mae"]
        self.result = result

    def run_groups(self) -> dict[str, xr.Dataset]:
        return {self.group: self.result} if self.result is not None else {}


class FunctionSnapshot(TheoryProbe):
    """At the end of training: the network's outputs on the DataModule's test inputs (a fixed grid shared by
    every seed of a sweep): group `function` with `f` (point, output) and `x` (point, input_dim)."""

    group = "function"

    def __init__(self, module: str | None = None) -> None:
        super().__init__(1, module)
        self.result: xr.Dataset | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        x = dm.x_test if hasattr(dm, "x_test") else self.data(trainer)[0]
        with torch.no_grad():
            f = self.network(pl_module)(x.to(pl_module.device)).double().cpu().numpy()
        self.result = xr.Dataset({"f": (("point", "output"), f), "x": (("point", "input_dim"), x.double().numpy())})
        self.result.attrs["description"] = "the trained network on the shared test inputs"

    def run_groups(self) -> dict[str, xr.Dataset]:
        return {self.group: self.result} if self.result is not None else {}
