"""Maximum-likelihood tasks for density models: `FlowTask` (discrete flows) and `CNFTask` (FFJORD)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import lightning as L
import numpy as np
import torch
import xarray as xr
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from nde_lab.errors import DataError, RecipeError
from nde_lab.flows.base import DensityModel, check_finite_loss
from nde_lab.flows.cnf import CNF, TraceMode
from nde_lab.flows.discrete import DiscreteFlow
from nde_lab.train.base import LabTask
from nde_lab.train.param_groups import build_optimizer

if TYPE_CHECKING:
    from nde_lab.store.schema import RunView as Run

__all__ = ["CNFTask", "DensityTask", "FlowTask", "density_grid"]

LN2 = math.log(2.0)


def _split_batch(batch: Any) -> tuple[Tensor, Tensor | None]:
    """A batch is x, (x,) or (x, context)."""
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (list, tuple)) and 1 <= len(batch) <= 2:
        return batch[0], (batch[1] if len(batch) == 2 else None)
    raise DataError(f"a density task expects batches x, (x,) or (x, context); got {type(batch).__name__}.")


def density_grid(model: DensityModel, *, extent: float, size: int, context: Tensor | None = None,
                 batch: int = 8192) -> xr.Dataset:
    """log p on a size x size grid over [-extent, extent]², as a Dataset with `log_prob` (x, y) in nats.

    `context` (C,) conditions a conditional model. attrs: `cell_area` and `integral` = Σ p · cell
    area (≈ 1 when the mass lies inside the grid).
    """
    axis = torch.linspace(-extent, extent, size, dtype=_dtype(model))
    gx, gy = torch.meshgrid(axis, axis, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1).to(_device(model))
    with torch.no_grad():
        lp = torch.cat([model.log_prob(chunk, context) for chunk in pts.split(batch)]).reshape(size, size)
    step = float(axis[1] - axis[0])
    integral = float(torch.exp(lp).sum() * step**2)
    return xr.Dataset(
        {"log_prob": (("x", "y"), lp.cpu().numpy(), {"units": "nats", "long_name": "log-density"})},
        coords={"x": axis.cpu().numpy(), "y": axis.cpu().numpy()},
        attrs={"cell_area": step**2, "integral": integral},
    )


def _dtype(model: torch.nn.Module) -> torch.dtype:
    p = next(model.parameters(), None)
    return p.dtype if p is not None else torch.get_default_dtype()


def _device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


class DensityTask(LabTask):
    """Fit a `DensityModel` by maximum likelihood; log NLL in nats and bits/dim (train and held out).

    Main arguments:
        model: the density (a `DiscreteFlow`, a `CNF`, ...).

    Other arguments:
        optimizer: optimizer factory (class_path + init_args in a recipe; default Adam, lr 1e-3).
        n_samples: draws stored in the run's `samples` group.
        grid_size: points per axis of the stored log-density grid (2-D unconditional models only).
        grid_extent: half-width of that grid; default: the DataModule's `extent`, else 4.
        sample_seed: seed of the stored draws.
    """

    model_family: ClassVar[str] = "density"

    def __init__(
        self,
        model: DensityModel,
        *,
        optimizer: OptimizerCallable = torch.optim.Adam,
        n_samples: int = 2000,
        grid_size: int = 128,
        grid_extent: float | None = None,
        sample_seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(model, DensityModel):
            raise TypeError(f"{type(self).__name__}.model must be a DensityModel, got {type(model).__name__}.")
        self.model = model
        self.optimizer_factory, self.n_samples, self.grid_size = optimizer, n_samples, grid_size
        self.grid_extent, self.sample_seed = grid_extent, sample_seed

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.optimizer_factory, self.model)

    def _nll_logs(self, prefix: str, nll: Tensor, batch_size: int) -> None:
        self.log(f"{prefix}_nll", nll, on_step=False, on_epoch=True, batch_size=batch_size, prog_bar=True)
        self.log(f"{prefix}_bpd", nll / (self.model.dim * LN2), on_step=False, on_epoch=True, batch_size=batch_size)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, context = _split_batch(batch)
        if not bool(torch.isfinite(x).all()):
            raise DataError(f"training batch {batch_idx} holds NaN or inf values; clean the data.")
        loss, logs = self.model.loss(x, context)
        check_finite_loss(loss, name="training loss (negative log-likelihood)",
                          where=f"{type(self).__name__} epoch {self.current_epoch}, batch {batch_idx}")
        self._nll_logs("train", logs.pop("nll"), x.shape[0])
        for key, value in logs.items():
            self.log(key, value, on_step=False, on_epoch=True, batch_size=x.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, context = _split_batch(batch)
        nll = -self.model.log_prob(x, context).mean()
        self._nll_logs("val", nll, x.shape[0])

    # ---- outputs -------------------------------------------------------------------------------
    def _coord_names(self, datamodule: L.LightningDataModule | None) -> list[str]:
        names = getattr(datamodule, "coord_names", None)
        if names is not None and len(names) == self.model.dim:
            return [str(n) for n in names]
        return [f"x{i}" for i in range(self.model.dim)]

    def _samples(self, n: int, seed: int | None, names: list[str], context: Tensor | None = None) -> xr.Dataset:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            draws = self.model.sample(n, context=context, generator=gen)
        return xr.Dataset(
            {"x": (("sample", "dim"), draws.cpu().numpy(), {"long_name": "draws from the fitted density"})},
            coords={"sample": np.arange(n), "dim": names},
            attrs={"seed": -1 if seed is None else seed, "num_draws": n},
        )

    def run_outputs(self, datamodule: L.LightningDataModule | None) -> dict[str, xr.Dataset]:
        if self.model.context_dim:
            return self._conditional_outputs(datamodule)
        names = self._coord_names(datamodule)
        out = {"samples": self._samples(self.n_samples, self.sample_seed, names)}
        if self.model.dim == 2:
            extent = self.grid_extent or getattr(datamodule, "extent", None) or 4.0
            out["density"] = density_grid(self.model, extent=float(extent), size=self.grid_size)
        return out

    def _conditional_outputs(self, datamodule: L.LightningDataModule | None) -> dict[str, xr.Dataset]:
        """Label-conditioned models (one-hot contexts, `context: label` data): samples and grids per label.

        Other conditional models store nothing here; query them with a context.
        """
        c = self.model.context_dim
        if getattr(datamodule, "context", None) != "label" or getattr(datamodule, "context_dim", None) != c:
            return {}
        names = self._coord_names(datamodule)
        eye = torch.eye(c, dtype=_dtype(self.model), device=_device(self.model))
        per_label = max(1, self.n_samples // c)
        draws = [self._samples(per_label, self.sample_seed + k, names, eye[k]) for k in range(c)]
        samples = xr.concat(draws, dim="label").assign_coords(label=np.arange(c))
        samples.attrs = {"seed": self.sample_seed, "num_draws": per_label, "context": "one-hot label"}
        out = {"samples": samples}
        if self.model.dim == 2:
            extent = float(self.grid_extent or getattr(datamodule, "extent", None) or 4.0)
            grids = [density_grid(self.model, extent=extent, size=self.grid_size, context=eye[k]) for k in range(c)]
            density = xr.concat(grids, dim="label").assign_coords(label=np.arange(c))
            density.attrs = {"cell_area": grids[0].attrs["cell_area"],
                             "integral": [g.attrs["integral"] for g in grids]}
            out["density"] = density
        return out

    # ---- queries -------------------------------------------------------------------------------
    def query_sample(self, run: Run, n: int, *, seed: int | None = None, context: Any = None, **kw: Any) -> xr.Dataset:
        """n draws as a Dataset with `x` (sample, dim); `seed` makes them reproducible."""
        names = _stored_names(run, self.model.dim)
        ctx = None if context is None else torch.as_tensor(np.asarray(context), dtype=_dtype(self.model),
                                                          device=_device(self.model))
        self.eval()
        return self._samples(int(n), seed, names, ctx)

    def query_log_prob(self, run: Run, x: Any, *, context: Any = None, batch_size: int = 8192, **kw: Any) -> xr.DataArray:
        """log p(x) in nats: x (n, dim) -> DataArray `log_prob` (sample,)."""
        self.eval()
        xt = torch.as_tensor(np.asarray(x), dtype=_dtype(self.model), device=_device(self.model))
        ctx = None if context is None else torch.as_tensor(np.asarray(context), dtype=xt.dtype, device=xt.device)
        self.model.check_data(xt, ctx)  # dimension / context errors before any work
        with torch.no_grad():
            lp = self._log_prob_batches(xt, ctx, batch_size, **kw)
        return xr.DataArray(lp.cpu().numpy(), dims=("sample",), name="log_prob", attrs={"units": "nats"})

    def _log_prob_batches(self, x: Tensor, ctx: Tensor | None, batch_size: int, **kw: Any) -> Tensor:
        if ctx is not None and ctx.ndim == 1:
            ctx = ctx.expand(x.shape[0], -1)
        parts = [
            self.model.log_prob(x[i : i + batch_size], None if ctx is None else ctx[i : i + batch_size])
            for i in range(0, x.shape[0], batch_size)
        ]
        return torch.cat(parts)


def _stored_names(run: Run, dim: int) -> list[str]:
    try:
        names = [str(v) for v in run.group("samples")["dim"].values]
        if len(names) == dim:
            return names
    except Exception:
        pass
    return [f"x{i}" for i in range(dim)]


class FlowTask(DensityTask):
    """Maximum likelihood for a discrete flow (`nde_lab.flows.DiscreteFlow`); see `DensityTask`."""

    model_family: ClassVar[str] = "flow"

    def __init__(self, flow: DiscreteFlow, *, optimizer: OptimizerCallable = torch.optim.Adam, n_samples: int = 2000, grid_size: int = 128,
                 grid_extent: float | None = None, sample_seed: int = 0) -> None:
        super().__init__(flow, optimizer=optimizer, n_samples=n_samples, grid_size=grid_size, grid_extent=grid_extent,
                         sample_seed=sample_seed)


class CNFTask(DensityTask):
    """Maximum likelihood for an FFJORD `CNF` (+ its Finlay et al. regularisers); logs `nfe`.

    Validation and stored outputs use the exact trace when `eval_trace` is "exact" (default
    "auto": the model's rule). `solver_stats` stores the function evaluations of the final solves.
    """

    model_family: ClassVar[str] = "cnf"

    def __init__(self, cnf: CNF, *, optimizer: OptimizerCallable = torch.optim.Adam, n_samples: int = 2000, grid_size: int = 128,
                 grid_extent: float | None = None, sample_seed: int = 0, eval_trace: TraceMode = "auto") -> None:
        super().__init__(cnf, optimizer=optimizer, n_samples=n_samples, grid_size=grid_size, grid_extent=grid_extent,
                         sample_seed=sample_seed)
        if eval_trace not in ("auto", "exact", "hutchinson"):
            raise RecipeError(
                f"CNFTask.eval_trace={eval_trace!r} is not valid; must be one of 'auto', 'exact', 'hutchinson'."
            )
        self.eval_trace = eval_trace

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, context = _split_batch(batch)
        logp, _ = self.model.log_prob_and_regularisers(x, context, trace=self.eval_trace)
        self._nll_logs("val", -logp.mean(), x.shape[0])
        self.log("val_nfe", float(self.model.last_stats.nfe), on_step=False, on_epoch=True, batch_size=x.shape[0])

    def run_outputs(self, datamodule: L.LightningDataModule | None) -> dict[str, xr.Dataset]:
        out = super().run_outputs(datamodule)
        stats: dict[str, Any] = {}
        val_x = getattr(datamodule, "val_x", None)
        if isinstance(val_x, Tensor) and not self.model.context_dim:
            with torch.no_grad():
                self.model.log_prob_and_regularisers(val_x[:1024].to(_device(self.model), _dtype(self.model)),
                                                     trace=self.eval_trace)
            stats["log_prob_nfe"] = self.model.last_stats.nfe
            stats["log_prob_steps"] = self.model.last_stats.steps
        with torch.no_grad():
            self.model.sample(16, generator=torch.Generator().manual_seed(0))
        stats["sample_nfe"] = self.model.last_stats.nfe
        stats["sample_steps"] = self.model.last_stats.steps
        opts = self.model.solver
        out["solver_stats"] = xr.Dataset(
            {k: ((), np.int64(v)) for k, v in stats.items()},
            attrs={"method": opts.method, "rtol": opts.rtol, "atol": opts.atol, "adjoint": opts.adjoint,
                   "trace": "exact" if self.model.exact_trace else f"hutchinson ({self.model.noise})",
                   "eval_trace": self.eval_trace,
                   "note": "function evaluations of the forward pass of one solve (log_prob of up to 1024 "
                           "held-out points; sampling 16 points)"},
        )
        return out

    def query_log_prob(self, run: Run, x: Any, *, trace: TraceMode | None = None, num_probes: int = 16,
                       seed: int | None = None, batch_size: int = 8192, **kw: Any) -> xr.DataArray:
        """log p(x) in nats: x (n, dim) -> DataArray `log_prob` (sample,).

        With the exact trace (the default in low dimension) the answer is deterministic. With
        Hutchinson's estimator (`trace="hutchinson"`, or "auto" in high dimension) it is the mean of
        `num_probes` independent probes, with its MC standard error as coordinate `mcse` and the
        number of probes in attrs; `seed` makes it reproducible.
        """
        if int(num_probes) < 1:
            raise ValueError(f"num_probes must be >= 1, got {num_probes}.")
        self.eval()
        xt = torch.as_tensor(np.asarray(x), dtype=_dtype(self.model), device=_device(self.model))
        self.model.check_data(xt, kw.pop("context", None))
        mode = trace or self.eval_trace
        exact = mode == "exact" or (mode == "auto" and self.model.dim <= self.model.exact_max_dim)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        probes = 1 if exact else int(num_probes)
        n = xt.shape[0]
        rows = max(1, batch_size // probes)
        parts = []
        with torch.no_grad():
            for i in range(0, n, rows):
                chunk = xt[i : i + rows]
                est = self.model.log_prob_and_regularisers(chunk.repeat(probes, 1), trace=mode, generator=gen)[0]
                parts.append(est.reshape(probes, chunk.shape[0]))
        est = torch.cat(parts, dim=1)
        attrs: dict[str, Any] = {"units": "nats", "trace": "exact" if exact else f"hutchinson ({self.model.noise})"}
        coords = {}
        if not exact:
            se = est.std(0) / math.sqrt(probes) if probes > 1 else torch.full_like(est[0], float("nan"))
            coords["mcse"] = ("sample", se.cpu().numpy())
            attrs["num_probes"] = probes
        return xr.DataArray(est.mean(0).cpu().numpy(), dims=("sample",), name="log_prob", coords=coords, attrs=attrs)
