"""`VAETask`: trains the Pyro `VAE` by stochastic variational inference (Trace_ELBO) in Lightning."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import lightning as L
import numpy as np
import torch
import xarray as xr
from lightning.pytorch.cli import OptimizerCallable
from pyro.infer import Trace_ELBO
from torch import Tensor

from nde_lab.errors import DataError
from nde_lab.flows.base import NonFiniteLossError, check_finite_loss
from nde_lab.prob.vae import VAE, independent_pixel_nll
from nde_lab.train.base import LabTask
from nde_lab.train.param_groups import build_optimizer

if TYPE_CHECKING:
    from nde_lab.store.schema import RunView as Run

__all__ = ["VAETask"]

LN2 = math.log(2.0)


def _x(batch: Any) -> Tensor:
    return batch[0] if isinstance(batch, (list, tuple)) else batch


class VAETask(LabTask):
    """SVI for a `VAE`: the loss is Pyro's `Trace_ELBO` of `vae.model` / `vae.guide` (per image).

    Logs per epoch (nats per image; `*_bpd` in bits per pixel): `train_elbo`, `val_elbo` (ELBO with
    `eval_particles` draws), `val_iwae` (importance-weighted bound, `iwae_particles` draws),
    `val_nll` (= −val_iwae) and `baseline_nll` (independent pixels fitted by ML on the training
    images, scored on the held-out ones).

    Main arguments:
        vae: the Pyro program (`nde_lab.prob.vae.VAE`).

    Other arguments:
        optimizer: optimizer factory (default Adam, lr 1e-3).
        num_particles: ELBO particles per training step.
        eval_particles: ELBO particles for validation.
        iwae_particles: importance samples of the held-out IWAE bound (and stored evaluation).
        n_samples: generated images stored in `samples`.
        sample_seed: seed of the stored draws and of the stored Monte Carlo estimates.
    """

    model_family: ClassVar[str] = "vae"

    def __init__(
        self,
        vae: VAE,
        *,
        optimizer: OptimizerCallable = torch.optim.Adam,
        num_particles: int = 1,
        eval_particles: int = 10,
        iwae_particles: int = 50,
        n_samples: int = 64,
        sample_seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(vae, VAE):
            raise TypeError(f"VAETask.vae must be a nde_lab.prob.vae.VAE, got {type(vae).__name__}.")
        self.vae = vae
        self.optimizer_factory = optimizer
        self.num_particles, self.eval_particles, self.iwae_particles = num_particles, eval_particles, iwae_particles
        self.n_samples, self.sample_seed = n_samples, sample_seed
        self.elbo_loss = Trace_ELBO(num_particles=num_particles).differentiable_loss
        self.baseline_nll: float | None = None

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.optimizer_factory, self.vae)

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        train_x, val_x = getattr(dm, "train_x", None), getattr(dm, "val_x", None)
        if isinstance(train_x, Tensor) and isinstance(val_x, Tensor):
            self.baseline_nll = float(independent_pixel_nll(
                train_x, val_x, likelihood=self.vae.likelihood_name, total_count=self.vae.total_count).mean())

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x = _x(batch)
        self.vae.check_data(x)
        where = f"VAETask epoch {self.current_epoch}, batch {batch_idx}"
        try:
            loss = self.elbo_loss(self.vae.model, self.vae.guide, x) / x.shape[0]
        except ValueError as err:  # Pyro's argument validation meets NaN/inf network outputs first
            if "invalid values" not in str(err):
                raise
            first_line = str(err).splitlines()[0]
            raise NonFiniteLossError(
                f"the negative ELBO is non-finite at {where}: {first_line} The encoder or decoder produced "
                "NaN/inf; lower the learning rate or check the data for non-finite values."
            ) from None
        check_finite_loss(loss, name="negative ELBO", where=where)
        n = x.shape[0]
        self.log("train_elbo", -loss.detach(), on_step=False, on_epoch=True, batch_size=n, prog_bar=True)
        self.log("train_bpd", loss.detach() / (self.vae.data_dim * LN2), on_step=False, on_epoch=True, batch_size=n)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = _x(batch)
        n, d = x.shape[0], self.vae.data_dim
        elbo = self.vae.elbo(x, num_particles=self.eval_particles)[0].mean()
        iwae = self.vae.iwae(x, num_particles=self.iwae_particles)[0].mean()
        self.log("val_elbo", elbo, on_step=False, on_epoch=True, batch_size=n, prog_bar=True)
        self.log("val_bpd", -elbo / (d * LN2), on_step=False, on_epoch=True, batch_size=n)
        self.log("val_iwae", iwae, on_step=False, on_epoch=True, batch_size=n)
        self.log("val_nll", -iwae, on_step=False, on_epoch=True, batch_size=n)
        self.log("val_nll_bpd", -iwae / (d * LN2), on_step=False, on_epoch=True, batch_size=n)
        if self.baseline_nll is not None:
            self.log("baseline_nll", self.baseline_nll, on_step=False, on_epoch=True, batch_size=n)

    # ---- outputs -------------------------------------------------------------------------------
    def _samples(self, n: int, seed: int | None) -> xr.Dataset:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            x, mean = self.vae.sample(n, generator=gen)
        return xr.Dataset(
            {"x": (("sample", "dim"), x.cpu().numpy(), {"long_name": "images drawn from p(x)"}),
             "mean": (("sample", "dim"), mean.cpu().numpy(), {"long_name": "E[x | z] of each draw"})},
            coords={"sample": np.arange(n), "dim": np.arange(self.vae.data_dim)},
            attrs={"seed": -1 if seed is None else seed, "num_draws": n, "likelihood": self.vae.likelihood_name},
        )

    def run_outputs(self, datamodule: L.LightningDataModule | None) -> dict[str, xr.Dataset]:
        out = {"samples": self._samples(self.n_samples, self.sample_seed)}
        val_x = getattr(datamodule, "val_x", None)
        if not isinstance(val_x, Tensor):
            return out
        val_x = val_x.to(self.vae._device(), self.vae._dtype())
        labels = getattr(datamodule, "val_labels", None)
        image = np.arange(val_x.shape[0])
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(self.sample_seed)
            loc, scale = self.vae.encode(val_x)
            recon = self.vae.reconstruct(val_x)
            elbo, elbo_se = self.vae.elbo(val_x, num_particles=self.eval_particles)
            iwae, iwae_se = self.vae.iwae(val_x, num_particles=self.iwae_particles)
        latent = xr.Dataset(
            {"z_loc": (("image", "latent"), loc.cpu().numpy()), "z_scale": (("image", "latent"), scale.cpu().numpy())},
            coords={"image": image, "latent": np.arange(self.vae.latent_dim)},
            attrs={"description": "mean and scale of the base Gaussian of q(z | x) for the held-out images"},
        )
        if isinstance(labels, Tensor):
            latent["label"] = ("image", labels.cpu().numpy())
        shape = list(getattr(datamodule, "image_shape", (self.vae.data_dim,)))
        reconstruction = xr.Dataset(
            {"x": (("image", "dim"), val_x.cpu().numpy()), "x_rec": (("image", "dim"), recon.cpu().numpy())},
            coords={"image": image, "dim": np.arange(self.vae.data_dim)},
            attrs={"image_shape": shape, "description": "held-out images and E[x | z] at the posterior mean"},
        )
        evaluation = xr.Dataset(
            {"elbo": ("image", elbo.cpu().numpy()), "elbo_mcse": ("image", elbo_se.cpu().numpy()),
             "iwae": ("image", iwae.cpu().numpy()), "iwae_mcse": ("image", iwae_se.cpu().numpy())},
            coords={"image": image},
            attrs={"units": "nats", "elbo_particles": self.eval_particles, "iwae_particles": self.iwae_particles,
                   "mean_elbo": float(elbo.mean()), "mean_iwae": float(iwae.mean()),
                   "baseline_nll": float("nan") if self.baseline_nll is None else self.baseline_nll,
                   "baseline": "independent pixels fitted by maximum likelihood on the training images"},
        )
        return out | {"latent": latent, "reconstruction": reconstruction, "evaluation": evaluation}

    # ---- queries -------------------------------------------------------------------------------
    def query_sample(self, run: Run, n: int, *, seed: int | None = None, **kw: Any) -> xr.Dataset:
        """n generated images: Dataset with `x` (sample, dim) and their means `mean`."""
        self.eval()
        return self._samples(int(n), seed)

    def query_log_prob(self, run: Run, x: Any, *, num_particles: int = 100, seed: int | None = None,
                       **kw: Any) -> xr.DataArray:
        """Importance-weighted estimate of log p(x) (IWAE bound, nats): x (n, D) -> (sample,).

        The DataArray carries the delta-method MC standard error as coordinate `mcse` and the number
        of particles in attrs; the bound tightens (in expectation) as `num_particles` grows.
        """
        if int(num_particles) < 1:
            raise ValueError(f"num_particles must be >= 1, got {num_particles}.")
        self.eval()
        xt = torch.as_tensor(np.asarray(x), dtype=self.vae._dtype(), device=self.vae._device())
        if xt.ndim == 1:
            raise DataError(f"log_prob expects x of shape (n, {self.vae.data_dim}), got {tuple(xt.shape)}.")
        with torch.random.fork_rng(), torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            est, se = self.vae.iwae(xt, num_particles=int(num_particles))
        return xr.DataArray(
            est.cpu().numpy(), dims=("sample",), name="log_prob",
            coords={"mcse": ("sample", se.cpu().numpy())},
            attrs={"units": "nats", "num_particles": int(num_particles), "estimator": "IWAE (Burda et al. 2016)"},
        )
