"""`RegressionTask`: fit a network f(x) to (x, y) by mean squared error, with the parametrisation's per-layer rates."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn

from nde_lab.solvers.registry import check_choice
from nde_lab.train.base import LabTask

__all__ = ["RegressionTask"]


class RegressionTask(LabTask):
    """Minimise mean((f(x) - y)^2) / 2 over the training set with SGD or Adam.

    Args:
        network: the network f (e.g. `nde_lab.dynamics.MLP`); if it has `parameter_groups(lr,
            optimizer=...)` (the lab's MLPs), its abc-table per-layer learning rates are used.
        optimizer: "sgd" (plain gradient descent; full-batch GD with a full-batch DataModule) or "adam".
        lr: base learning rate eta.
        momentum: SGD momentum.
    """

    model_family = "regression"

    def __init__(self, network: nn.Module, *, optimizer: Literal["sgd", "adam"] = "sgd", lr: float = 0.1,
                 momentum: float = 0.0) -> None:
        super().__init__()
        check_choice("optimizer", optimizer, ["sgd", "adam"], error=ValueError)
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}.")
        self.network = network
        self.optimizer_name, self.lr, self.momentum = optimizer, lr, momentum

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)

    @staticmethod
    def loss_fn(predicted: Tensor, target: Tensor) -> Tensor:
        """Half mean squared error (its Hessian in the output is I/n: sharpness 2/eta is GD's edge)."""
        return 0.5 * ((predicted - target) ** 2).sum(-1).mean()

    def configure_optimizers(self) -> Any:
        if hasattr(self.network, "parameter_groups"):
            params: Any = self.network.parameter_groups(self.lr, optimizer=self.optimizer_name)
        else:
            params = self.network.parameters()
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        return torch.optim.Adam(params, lr=self.lr)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = self.loss_fn(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        predicted = self(x)
        self.log("val_loss", self.loss_fn(predicted, y), batch_size=len(x))
        self.log("val_mae", (predicted - y).abs().mean(), batch_size=len(x))

    def run_outputs(self, datamodule: Any) -> dict[str, xr.Dataset]:
        if datamodule is None or not hasattr(datamodule, "x_test"):
            return {}
        groups = {}
        for name, (x, y) in {"train": (datamodule.x_train, datamodule.y_train),
                             "test": (datamodule.x_test, datamodule.y_test)}.items():
            predicted = self(x.to(self.device)).cpu()
            groups[f"{name}_loss"] = float(self.loss_fn(predicted, y))
            groups[f"{name}_mae"] = float((predicted - y).abs().mean())
        evaluation = xr.Dataset({k: ((), np.float64(v)) for k, v in groups.items()})
        evaluation.attrs["description"] = "final half-MSE loss and MAE on the training and test sets"
        return {"evaluation": evaluation}

    def run_attrs(self) -> dict[str, Any]:
        net = self.network
        return {key: getattr(net, key) for key in ("width", "depth", "parametrization") if hasattr(net, key)} | {
            "lr": self.lr, "optimizer": self.optimizer_name}

    def query_predict(self, run: Any, times: Any, **kwargs: Any) -> xr.Dataset:
        """f at inputs `times` (here: an array of inputs x, shape (n, d)) as `y` (point, output)."""
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(times), dtype=next(self.network.parameters()).dtype)
            y = self.network(x).numpy()
        return xr.Dataset({"y": (("point", "output"), y)})
