"""Lightning callbacks that run the theory probes during `nde-lab fit` and contribute groups to the run.

List them under `trainer.callbacks` in a recipe; the CLI stores every callback's `run_groups()`.
Each probe records at the start of training (`epoch` 0) and after every `every_n_epochs` completed
epochs (`epoch` = number of completed epochs; with a full-batch DataModule, one epoch is one GD step).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
import xarray as xr
from torch import Tensor

from nde_lab.dynamics.base import VectorField
from nde_lab.theory._common import multipliers, resolve_network
from nde_lab.theory.curvature import (
    HessianOperator,
    hessian_spectrum,
    hutchinson_trace,
    lanczos_top,
)
from nde_lab.theory.kernels import infinite_width_kernels
from nde_lab.theory.tangent_kernel import empirical_ntk, relative_drift

__all__ = ["HessianProbe", "NTKProbe", "TheoryProbe", "WeightChangeProbe"]


class TheoryProbe(L.Callback):
    """Base: resolves the network and the probe data, schedules records, holds the rows.

    Args:
        every_n_epochs: record after every k completed epochs (and at the start and the end).
        module: dotted attribute of the task holding the network (default: `network`, or its only module).
    """

    group = "probe"

    def __init__(self, every_n_epochs: int = 1, module: str | None = None) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}.")
        self.every_n_epochs, self.module = every_n_epochs, module
        self.epochs: list[int] = []
        self.rows: list[dict[str, Any]] = []

    def network(self, pl_module: L.LightningModule) -> torch.nn.Module:
        return resolve_network(pl_module, self.module)

    @staticmethod
    def data(trainer: L.Trainer) -> tuple[Tensor, Tensor]:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "train_tensors"):
            raise ValueError(f"theory probes need a DataModule with train_tensors() (e.g. nde_lab.data."
                             f"RegressionDataModule); got {type(dm).__name__}.")
        return dm.train_tensors()

    def inputs(self, trainer: L.Trainer, pl_module: L.LightningModule, n: int) -> Tensor:
        """n probe inputs: the first training inputs, or for a vector field trained on a series (a
        DataModule with `values` (time, state)) n observed states spread over the series, standardised
        and augmented as the task feeds them to the field."""
        dm = trainer.datamodule
        if hasattr(dm, "train_tensors"):
            return dm.train_tensors()[0][:n]
        net = self.network(pl_module)
        values = getattr(dm, "values", None)
        if isinstance(net, VectorField) and isinstance(values, Tensor) and values.ndim == 2:
            states = values[torch.linspace(0, len(values) - 1, min(n, len(values))).long()].to(pl_module.device)
            normalise = getattr(pl_module, "_normalise", None)
            return net.augment(normalise(states) if callable(normalise) else states)
        raise ValueError(f"{type(self).__name__} needs a DataModule with train_tensors() or a vector field trained "
                         f"on a series; got {type(dm).__name__} and {type(net).__name__}.")

    def record(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        """Measure the probe at `epoch`; every concrete probe (NTKProbe, HessianProbe, ...) overrides it."""
        raise NotImplementedError(f"{type(self).__name__} is a probe base class: subclasses implement record().")

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        if epoch in self.epochs:
            return
        with torch.enable_grad():
            self.rows.append(self.record(trainer, pl_module, epoch))
        self.epochs.append(epoch)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, pl_module, 0)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = trainer.current_epoch + 1
        if done % self.every_n_epochs == 0:
            self._record(trainer, pl_module, done)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, pl_module, trainer.current_epoch if trainer.current_epoch else 0)

    def _stack(self, dims: dict[str, tuple[str, ...]]) -> xr.Dataset:
        data = {name: (("epoch", *d), np.stack([np.asarray(r[name], dtype=np.float64) for r in self.rows]))
                for name, d in dims.items()}
        return xr.Dataset(data, coords={"epoch": np.asarray(self.epochs, dtype=np.int64)})

    def run_groups(self) -> dict[str, xr.Dataset]:
        return {}


class NTKProbe(TheoryProbe):
    """Empirical NTK on `n_inputs` probe inputs (`TheoryProbe.inputs`: training inputs, or observed states
    for a vector field) along training: group `ntk` with `kernel`
    (epoch, point, point_other, output, output_other), `eigenvalues` (epoch, eigen_index) and the relative
    drift ||K_t - K_0||_F / ||K_0||_F (epoch). For an NTK-parametrised ReLU/erf `MLP`, also the
    infinite-width `analytic_kernel` and `analytic_error` (epoch), the relative Frobenius distance to it.

    Args:
        n_inputs: number of probe inputs N.
        lr_weighted: weight parameters by their learning-rate factors (the kernel of the dynamics).
    """

    group = "ntk"

    def __init__(self, every_n_epochs: int = 1, n_inputs: int = 8, lr_weighted: bool = False,
                 module: str | None = None) -> None:
        super().__init__(every_n_epochs, module)
        self.n_inputs, self.lr_weighted = n_inputs, lr_weighted
        self.analytic: np.ndarray | None = None

    def record(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> dict[str, Any]:
        net = self.network(pl_module)
        x = self.inputs(trainer, pl_module, self.n_inputs).to(pl_module.device)
        kernel = empirical_ntk(net, x, lr_weighted=self.lr_weighted).detach().double().cpu()
        n, _, o, _ = kernel.shape
        matrix = kernel.permute(0, 2, 1, 3).reshape(n * o, n * o)
        eig = torch.linalg.eigvalsh(matrix).flip(0) if torch.isfinite(matrix).all() else torch.full((n * o,), torch.nan)
        if not self.rows and getattr(net, "parametrization", None) == "ntk" and getattr(net, "activation", None) in (
                "relu", "erf"):
            self.probe_x = x.double().cpu().numpy()
            self.analytic = infinite_width_kernels(self.probe_x, depth=net.depth, activation=net.activation)[1]
        row = {"kernel": kernel.numpy(), "eigenvalues": eig.numpy(),
               "drift": relative_drift(kernel, self.rows[0]["kernel"]) if self.rows else 0.0}
        if self.analytic is not None:
            row["analytic_error"] = relative_drift(kernel[:, :, 0, 0], self.analytic)
        return row

    def run_groups(self) -> dict[str, xr.Dataset]:
        if not self.rows:
            return {}
        dims = {"kernel": ("point", "point_other", "output", "output_other"), "eigenvalues": ("eigen_index",),
                "drift": ()}
        if self.analytic is not None:
            dims["analytic_error"] = ()
        ds = self._stack(dims)
        if self.analytic is not None:
            ds["analytic_kernel"] = (("point", "point_other"), self.analytic)
        ds.attrs.update(description="empirical NTK along training (Jacot et al. 2018)", lr_weighted=self.lr_weighted)
        return {self.group: ds}


class HessianProbe(TheoryProbe):
    """Top-k Hessian eigenvalues of the full training loss along training (Lanczos; residuals stored),
    the trace by Hutchinson (with its standard error) if `hutchinson_probes` > 0, and at the end the full
    spectrum (SLQ density, trace, near-zero count): group `hessian`. The top eigenvalue is the
    sharpness of Cohen et al. (2021); attr `edge` is 2/lr for the task's learning rate.
    """

    group = "hessian"

    def __init__(self, every_n_epochs: int = 10, k: int = 1, hutchinson_probes: int = 0, tol: float = 1e-4,
                 final_spectrum: bool = True, slq_probes: int = 5, slq_steps: int = 30,
                 module: str | None = None) -> None:
        super().__init__(every_n_epochs, module)
        self.k, self.hutchinson_probes, self.tol = k, hutchinson_probes, tol
        self.final_spectrum, self.slq_probes, self.slq_steps = final_spectrum, slq_probes, slq_steps
        self.final: xr.Dataset | None = None
        self.lr: float | None = None

    def record(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> dict[str, Any]:
        self.lr = getattr(pl_module, "lr", None)
        x, y = self.data(trainer)
        op = HessianOperator(self.network(pl_module), x.to(pl_module.device), y.to(pl_module.device))
        values, residual = lanczos_top(op, self.k, tol=self.tol)
        row: dict[str, Any] = {"top_eigenvalues": values, "top_residual": residual}
        if self.hutchinson_probes:
            row["trace"], row["trace_mcse"] = hutchinson_trace(op, self.hutchinson_probes, seed=epoch)
        return row

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.final_spectrum:
            x, y = self.data(trainer)
            with torch.enable_grad():
                self.final = hessian_spectrum(self.network(pl_module), x, y, k=max(self.k, 5),
                                              n_probes=self.slq_probes, slq_steps=self.slq_steps)

    def run_groups(self) -> dict[str, xr.Dataset]:
        if not self.rows:
            return {}
        dims = {"top_eigenvalues": ("eigen_index",), "top_residual": ("eigen_index",)}
        if self.hutchinson_probes:
            dims |= {"trace": (), "trace_mcse": ()}
        ds = self._stack(dims)
        ds["sharpness"] = ds["top_eigenvalues"].isel(eigen_index=0, drop=True)
        ds.attrs["description"] = "loss-Hessian curvature along training"
        if self.lr:
            ds.attrs["edge"] = 2.0 / self.lr
        groups = {self.group: ds}
        if self.final is not None:
            final = self.final.rename(eigen_index="final_eigen_index")
            groups["hessian_final"] = final
        return groups


class WeightChangeProbe(TheoryProbe):
    """Relative change of the effective weights (multiplier * tensor) from initialisation: per layer
    tensor `relative_change` (epoch, tensor) and over all of them `total_relative_change` (epoch)."""

    group = "weight_change"

    def record(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> dict[str, Any]:
        net = self.network(pl_module)
        mults = multipliers(net)
        current = {n: (mults[n] * p.detach().double()).cpu() for n, p in net.named_parameters()}
        if not self.rows:
            self.initial, self.names = current, list(current)
        diff = [float((current[n] - self.initial[n]).norm()) for n in self.names]
        base = [float(self.initial[n].norm()) for n in self.names]
        return {"relative_change": np.array(diff) / np.maximum(base, 1e-300),
                "total_relative_change": np.sqrt(np.sum(np.square(diff))) / np.sqrt(np.sum(np.square(base)))}

    def run_groups(self) -> dict[str, xr.Dataset]:
        if not self.rows:
            return {}
        ds = self._stack({"relative_change": ("tensor",), "total_relative_change": ()})
        ds = ds.assign_coords(tensor=self.names)
        ds.attrs["description"] = "||W_t - W_0||_F / ||W_0||_F of the effective weights"
        return {self.group: ds}
