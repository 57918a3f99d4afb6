"""`LatentSDETask`: fit a latent SDE (Li et al. 2020) by the ELBO with KL annealing, on irregular observation times."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import xarray as xr
from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor

from nde_lab.dynamics.sde_latent import LatentSDEModel
from nde_lab.errors import DataError, SolverError
from nde_lab.solvers.paths import PathSample, sample_paths
from nde_lab.solvers.sde import SDESolverOptions, solve_sde
from nde_lab.train.base import LabTask
from nde_lab.train.param_groups import build_optimizer
from nde_lab.train.sde_fit import QUANTILES, paths_dataset, solver_stats_dataset

if TYPE_CHECKING:
    from nde_lab.data.sde_data import PathsDataModule
    from nde_lab.store.schema import RunView as Run

__all__ = ["LatentSDETask"]


class LatentSDETask(LabTask):
    """Latent SDE of Li, Wong, Chen & Duvenaud (2020) trained by maximising the ELBO.

    ELBO per path = sum_k log p(y_k | z(t_k)) - KL(q(z0) || p(z0)) - E int 0.5 |(f - h)/g|^2 dt,
    estimated with one posterior path per observed path. The KL terms are weighted by
    `kl_weight = min(1, kl_start + (1 - kl_start) * step / kl_anneal_steps)` (annealing); the logged
    `train_elbo` is always the unweighted ELBO per path. Data are standardised per coordinate with
    the training paths' mean and scale (kept as buffers); everything stored is in data units.
    Training uses only the observed times of each batch (`observed` mask); held-out times are
    predicted and scored by `val_coverage_90` (share of held-out observations inside the 90%
    posterior-predictive band). The band is formed from posterior latent paths (z0 ~ q(z0), posterior
    SDE given the observed times), decoded, plus observation-noise draws. Note: with a variational
    posterior that cannot contract fully at the observations, the fitted observation noise absorbs
    the posterior's spread as well as its bias, so longer training tends to widen the band
    (over-coverage) and shorter training leaves bias (under-coverage); check `coverage_90`.

    Main arguments:
        model: the `LatentSDEModel` (latent size, context size, widths).
        solver: SDE solver options (fixed-step Euler by default, dt in data time units).

    Other arguments:
        kl_start, kl_anneal_steps: KL annealing schedule.
        n_samples: generative paths stored in `trajectories` and posterior-predictive draws per validation path.
        max_pp_paths: validation paths stored in `posterior_predictive`.
        sampling_seed: seed of stored samples; optimizer: factory (default Adam, lr 1e-2).
    """

    model_family = "latent_sde"

    def __init__(
        self,
        model: LatentSDEModel,
        solver: SDESolverOptions | None = None,
        kl_start: float = 0.0,
        kl_anneal_steps: int = 200,
        n_samples: int = 200,
        max_pp_paths: int = 32,
        sampling_seed: int = 0,
        quantiles: list[float] | None = None,
        optimizer: OptimizerCallable | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= kl_start <= 1.0 or kl_anneal_steps < 1:
            raise ValueError(f"model.kl_start must be in [0, 1] and kl_anneal_steps >= 1; got {kl_start}, {kl_anneal_steps}.")
        if n_samples < 2 or max_pp_paths < 1:
            raise ValueError(f"model.n_samples must be >= 2 and max_pp_paths >= 1; got {n_samples}, {max_pp_paths}.")
        self.model = model
        self.solver = solver or SDESolverOptions(method="euler", dt=0.05)
        self.kl_start, self.kl_anneal_steps = kl_start, kl_anneal_steps
        self.n_samples, self.max_pp_paths, self.sampling_seed = n_samples, max_pp_paths, sampling_seed
        self.quantiles = tuple(quantiles or QUANTILES)
        self.optimizer_factory = optimizer
        self.register_buffer("data_loc", torch.zeros(model.data_dim))
        self.register_buffer("data_scale", torch.ones(model.data_dim))
        self._seeds = torch.Generator().manual_seed(sampling_seed + 1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        if self.optimizer_factory is None:
            return build_optimizer(partial(torch.optim.Adam, lr=1e-2), self)
        return build_optimizer(self.optimizer_factory, self)

    def setup(self, stage: str) -> None:
        from nde_lab.data.sde_data import PathsDataModule

        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if stage == "fit" and isinstance(datamodule, PathsDataModule):
            values = datamodule.values[datamodule.train_index][:, datamodule.observed]
            if values.shape[-1] != self.model.data_dim:
                raise DataError(f"the data has {values.shape[-1]} state columns but model.model.data_dim is {self.model.data_dim}.")
            self.data_loc.copy_(torch.as_tensor(values.mean(axis=(0, 1))))
            self.data_scale.copy_(torch.as_tensor(np.maximum(values.std(axis=(0, 1)), 1e-8)))

    def kl_weight(self) -> float:
        return min(1.0, self.kl_start + (1.0 - self.kl_start) * self.global_step / self.kl_anneal_steps)

    # ---- the ELBO ---------------------------------------------------------------------------------
    def _next_seed(self) -> int:
        return int(torch.randint(0, 2**31 - 1, (1,), generator=self._seeds))

    def elbo_terms(self, t: Tensor, y: Tensor, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        """Log-likelihood, KL(z0) and path KL per path (B,) for y (B, T, D) in data units at times t (T,)."""
        z_obs = (y - self.data_loc) / self.data_scale
        ctx, qz0 = self.model.encode(t, z_obs)
        z0 = qz0.rsample()
        aug0 = torch.cat([z0, torch.zeros_like(z0[:, :1])], dim=1)
        sol = solve_sde(self.model.posterior_sde(t, ctx), aug0, t, options=self.solver, seed=seed)
        zs, logqp = sol.y[..., :-1], sol.y[-1, :, -1]
        return self.model.log_lik(zs, z_obs), self.model.kl_z0(qz0), logqp

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        keep = batch["observed"]
        loglik, kl0, klpath = self.elbo_terms(batch["t"][keep], batch["y"][:, keep], self._next_seed())
        elbo = (loglik - kl0 - klpath).mean()
        loss = -(loglik - self.kl_weight() * (kl0 + klpath)).mean()
        n = batch["y"].shape[0]
        self.log("train_elbo", elbo, prog_bar=True, batch_size=n)
        self.log("train_kl", (kl0 + klpath).mean(), batch_size=n)
        self.log("kl_weight", self.kl_weight(), batch_size=n)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        keep = batch["observed"]
        n = batch["y"].shape[0]
        loglik, kl0, klpath = self.elbo_terms(batch["t"][keep], batch["y"][:, keep], seed=self.sampling_seed)
        self.log("val_elbo", (loglik - kl0 - klpath).mean(), batch_size=n)
        if not bool(keep.all()):
            draws = self.posterior_predictive(batch["t"], batch["y"], keep, n=50, seed=self.sampling_seed)
            lo, hi = torch.quantile(draws, 0.05, dim=0), torch.quantile(draws, 0.95, dim=0)
            held = batch["y"][:, ~keep]
            inside = ((held >= lo[:, ~keep]) & (held <= hi[:, ~keep])).double().mean()
            self.log("val_coverage_90", inside, batch_size=n)

    # ---- sampling -----------------------------------------------------------------------------------
    def posterior_predictive(self, t: Tensor, y: Tensor, observed: Tensor, *, n: int, seed: int) -> Tensor:
        """Draws (n, B, T, D) of y at all times `t` given the observations y[:, observed] (data units)."""
        b, n_t, d = y.shape
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            z_obs = (y[:, observed] - self.data_loc) / self.data_scale
            ctx, qz0 = self.model.encode(t[observed], z_obs)
            ctx = ctx.repeat_interleave(n, dim=1)
            mean, std = qz0.loc.repeat_interleave(n, 0), qz0.scale.repeat_interleave(n, 0)
            z0 = mean + std * torch.randn(mean.shape, generator=gen, dtype=mean.dtype)
            aug0 = torch.cat([z0, torch.zeros_like(z0[:, :1])], dim=1)
            sol = solve_sde(self.model.posterior_sde(t[observed], ctx), aug0, t, options=self.solver, seed=seed)
            self._check(sol)
            mean_y = self.model.decoder(sol.y[..., :-1])  # (T, B*n, D)
            noisy = mean_y + self.model.obs_std() * torch.randn(mean_y.shape, generator=gen, dtype=mean_y.dtype)
        return (noisy * self.data_scale + self.data_loc).reshape(n_t, b, n, d).permute(2, 1, 0, 3)

    def generate(self, times: np.ndarray, n: int, seed: int) -> tuple[Tensor, PathSample]:
        """n paths (n, T, D) of the generative model (prior SDE, decoder, observation noise) at `times`.

        The prior SDE is sampled by `sample_paths`: every output time is a step end (the step grid is
        refined between output times, never interpolated), so off-grid times carry the model's full
        variance; the returned `PathSample` records the method and the step actually used.
        """
        dtype = self.data_loc.dtype
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            pz0 = self.model.prior_z0()
            z0 = pz0.loc + pz0.scale * torch.randn((n, self.model.latent_dim), generator=gen, dtype=dtype)
            sample = sample_paths(self.model.prior_sde(), z0, times, options=self.solver, seed=seed, exact=False)
            if sample.masked_paths and self.solver.on_nonfinite == "raise":
                raise SolverError(f"{sample.masked_paths} of {n} latent paths became non-finite (solver.on_nonfinite='raise').")
            latent = torch.as_tensor(sample.y, dtype=dtype)[sample.finite].permute(1, 0, 2)  # (T, n_finite, latent)
            mean_y = self.model.decoder(latent)
            noisy = mean_y + self.model.obs_std() * torch.randn(mean_y.shape, generator=gen, dtype=dtype)
        return (noisy * self.data_scale + self.data_loc).permute(1, 0, 2), sample

    def _check(self, sol: Any) -> None:
        if sol.stats.masked_paths and self.solver.on_nonfinite == "raise":  # pragma: no cover - solve_sde raises first
            raise SolverError("non-finite latent paths")

    # ---- the run store ------------------------------------------------------------------------------
    def run_outputs(self, datamodule: PathsDataModule | None) -> dict[str, xr.Dataset]:
        from nde_lab.data.sde_data import PathsDataModule

        if not isinstance(datamodule, PathsDataModule):
            return {}
        dtype = self.data_loc.dtype
        names, times = list(datamodule.state_names), datamodule.times
        gen_paths, sol = self.generate(times, self.n_samples, self.sampling_seed)
        trajectories = paths_dataset(gen_paths.cpu().numpy(), times, names, time_units=datamodule.time_units, units=datamodule.units,
                                     attrs={"seed": self.sampling_seed, "kind": "generative model: prior SDE + decoder + observation noise"})
        index = (datamodule.val_index if len(datamodule.val_index) else datamodule.train_index)[: self.max_pp_paths]
        y = torch.as_tensor(datamodule.values[index], dtype=dtype)
        observed = torch.as_tensor(datamodule.observed)
        draws = self.posterior_predictive(torch.as_tensor(times, dtype=dtype), y, observed, n=self.n_samples, seed=self.sampling_seed)
        draws_np = draws.cpu().numpy()
        finite = np.isfinite(draws_np).all(axis=(1, 2, 3))
        draws_np = draws_np[finite]
        pp = xr.Dataset(
            {"y": (("sample", "path", "time", "state"), draws_np.astype(np.float64), {"units": datamodule.units})},
            coords={"sample": np.arange(draws_np.shape[0]), "path": index, "time": ("time", times, {"units": datamodule.time_units}), "state": names},
            attrs={"seed": self.sampling_seed, "kind": "posterior predictive given the observed times of each path"},
        )
        ys = pp["y"]
        summary = xr.Dataset({"mean": ys.mean("sample"), "std": ys.std("sample", ddof=1), "quantiles": ys.quantile(list(self.quantiles), dim="sample")},
                             attrs={"n_samples": int(ys.sizes["sample"]), "of": "posterior_predictive"})
        summary["mcse"] = summary["std"] / np.sqrt(ys.sizes["sample"])
        held = ~datamodule.observed
        if held.any():
            lo, hi = ys.quantile(0.05, dim="sample").values, ys.quantile(0.95, dim="sample").values
            truth = datamodule.values[index]
            inside = (truth >= lo) & (truth <= hi)
            summary["coverage_90"] = ((), float(inside[:, held].mean()))
            summary["coverage_90"].attrs["description"] = "share of held-out observations inside the 90% posterior-predictive band"
            summary["n_heldout"] = ((), int(inside[:, held].size))
        parameters = xr.Dataset({"obs_std": ("state", (self.model.obs_std() * self.data_scale).detach().cpu().numpy().astype(np.float64))},
                                coords={"state": names}, attrs={"units": datamodule.units})
        stats = solver_stats_dataset(sol, self.solver, pp_masked_paths=int((~finite).sum()))
        return {"observed_data": datamodule.observed_dataset(), "trajectories": trajectories, "posterior_predictive": pp,
                "summary": summary, "parameters": parameters, "solver_stats": stats}

    def run_attrs(self) -> dict[str, Any]:
        return {"sampling_seed": self.sampling_seed, "solver_method": self.solver.method or "euler"}

    # ---- queries ------------------------------------------------------------------------------------
    def query_sample(self, run: Run, n: int, times: Any = None, seed: int | None = None, **kwargs: Any) -> xr.Dataset:
        """`n` paths (sample, time, state) of the generative model; seed defaults to the run's sampling seed."""
        if kwargs:
            raise TypeError(f"sample() got unexpected arguments {sorted(kwargs)}; it takes n, times, seed.")
        obs = run.group("observed_data")
        times = np.array(obs["time"].values if times is None else times, dtype=np.float64)  # writable copy
        seed = int(run.attrs.get("sampling_seed", self.sampling_seed)) if seed is None else int(seed)
        paths, sample = self.generate(times, n, seed)
        return paths_dataset(paths.cpu().numpy(), times, list(obs["state"].values), time_units=obs["time"].attrs.get("units", "1"),
                             units=obs["y"].attrs.get("units", "1"),
                             attrs={"seed": seed, "masked_paths": sample.masked_paths, "method": sample.method, "step": sample.step})

    def query_predict(self, run: Run, times: np.ndarray | None, n: int = 200, seed: int | None = None, path: int = 0, **kwargs: Any) -> xr.Dataset:
        """Posterior-predictive summary at `times` (default all stored times) given stored observed path `path`.

        Returns mean, std, quantiles and the mean's Monte Carlo standard error (attrs: n_draws, seed).
        """
        if kwargs:
            raise TypeError(f"predict() got unexpected arguments {sorted(kwargs)}; it takes times, n, seed, path.")
        obs = run.group("observed_data")
        seed = int(run.attrs.get("sampling_seed", self.sampling_seed)) if seed is None else int(seed)
        dtype = self.data_loc.dtype
        t_obs = obs["time"].values[obs["observed"].values.astype(bool)]
        y_obs = obs["y"].values[path][obs["observed"].values.astype(bool)]
        grid = np.union1d(t_obs, obs["time"].values if times is None else np.asarray(times, dtype=np.float64))
        if grid[0] < t_obs[0]:
            raise ValueError(f"predict() times must not precede the first observation t={t_obs[0]:g}.")
        mask = np.isin(grid, t_obs)
        y_full = np.zeros((1, grid.size, y_obs.shape[-1]))
        y_full[0, mask] = y_obs
        draws = self.posterior_predictive(torch.as_tensor(grid, dtype=dtype), torch.as_tensor(y_full, dtype=dtype),
                                          torch.as_tensor(mask), n=n, seed=seed)[:, 0].cpu().numpy()
        keep = np.isin(grid, grid if times is None else np.asarray(times, dtype=np.float64))
        paths = paths_dataset(draws[:, keep], grid[keep], list(obs["state"].values), units=obs["y"].attrs.get("units", "1"))
        y = paths["y"]
        out = xr.Dataset({"mean": y.mean("sample"), "std": y.std("sample", ddof=1), "quantiles": y.quantile(list(self.quantiles), dim="sample")},
                         attrs={"n_draws": int(y.sizes["sample"]), "seed": seed, "path": path})
        out["mcse"] = out["std"] / np.sqrt(y.sizes["sample"])
        return out
