"""Bayesian tasks over a `ProbProgram`: SVI with an autoguide, NUTS, and the fast batched posterior."""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyro
import torch
import xarray as xr

from nde_lab.errors import NdeLabError, RecipeError
from nde_lab.prob.data import SeriesData, TabularData
from nde_lab.prob.fast import StudentTProposal, init_guide_at, laplace_start
from nde_lab.prob.inference import (
    GUIDES,
    GuideName,
    make_guide,
    run_nuts,
    sample_guide,
    sample_prior,
)
from nde_lab.prob.posterior import (
    draws_dataset,
    flatten_draws,
    log_likelihood_dataset,
    observed_dataset,
    predictive_dataset,
    sample_stats_dataset,
    summary_dataset,
)
from nde_lab.prob.programs import OBS, ProbProgram
from nde_lab.store.schema import split_constant_data
from nde_lab.train.base import LabTask

if TYPE_CHECKING:
    import lightning as L

    from nde_lab.store.schema import RunView as Run

__all__ = ["BayesTask", "FastPosteriorTask", "NUTSTask", "SVITask"]

DType = Literal["float64", "float32"]


@contextlib.contextmanager
def _dtype(name: str):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, name))
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


class BayesTask(LabTask):
    """Shared machinery: bind the program to the datamodule's observations, write ArviZ groups, answer
    `sample` and `predict` from the stored posterior.

    Args:
        program: the probabilistic program (priors, model, likelihood), class_path + init_args.
        dtype: precision of every computation ("float64" by default).
        seed: seed of the sampler / proposal / predictive draws.
        num_prior_draws: draws stored in `prior` and `prior_predictive` (chain = 1).
    """

    model_family = "bayes"

    def __init__(self, program: ProbProgram, *, dtype: DType = "float64", seed: int = 0,
                 num_prior_draws: int = 500) -> None:
        super().__init__()
        if not isinstance(program, ProbProgram):
            raise RecipeError(f"model.program must be a ProbProgram (class_path + init_args), got {type(program).__name__}.")
        self.program = program
        self.dtype_name = dtype
        self.seed = seed
        self.num_prior_draws = num_prior_draws
        self._draws: dict[str, torch.Tensor] | None = None
        self._post_attrs: dict[str, Any] = {}
        self._stats: dict[str, np.ndarray] | None = None

    # ---- data ---------------------------------------------------------------------------------------
    def _bind(self, data: SeriesData | TabularData) -> None:
        with _dtype(self.dtype_name):
            self.program.bind(dataclasses.replace(data))

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        if dm is None or not hasattr(dm, "observations"):
            raise RecipeError("a Bayesian task needs a data module with `observations` "
                              "(nde_lab.data.tabular.RuggedGDPDataModule or SeriesObservationsDataModule).")
        with _dtype(self.dtype_name):  # load in the task's precision (float32 would overflow large data)
            observations = dm.observations
        self._bind(observations)

    def _bind_from_run(self, run: Run) -> None:
        obs = run.group("observed_data")
        if "time" in obs.dims:
            data = SeriesData(times=obs["time"].values, values=obs[OBS].transpose("time", "state").values,
                              state_names=[str(s) for s in obs["state"].values], source="observed_data")
        else:
            try:  # covariates live in constant_data (runs before issue 8 kept them in observed_data)
                covariates = run.group("constant_data")
            except KeyError:
                covariates = obs
            data = TabularData(x=covariates["x"].values, y=obs[OBS].values, feature_names=[str(f) for f in covariates["feature"].values],
                               source="observed_data")
        self._bind(data)

    # ---- outputs ------------------------------------------------------------------------------------
    def run_outputs(self, datamodule: L.LightningDataModule | None) -> dict[str, xr.Dataset]:
        if self._draws is None:
            raise NdeLabError("no posterior was computed (training did not finish); nothing is written as a posterior.")
        with _dtype(self.dtype_name):
            prog = self.program
            post = draws_dataset(prog, self._draws, attrs=self._post_attrs)
            flat, shape = flatten_draws(post, prog.parameter_names)
            pyro.set_rng_seed(self.seed + 1)
            with torch.no_grad():
                prior_params, prior_y = sample_prior(prog, self.num_prior_draws)
            prior = draws_dataset(prog, {k: v.unsqueeze(0) for k, v in prior_params.items()})
            prior_pred = xr.Dataset({OBS: (("chain", "draw", *prog.obs_dims), prior_y.unsqueeze(0).double().numpy())},
                                    coords={"chain": [0], "draw": np.arange(self.num_prior_draws), **prog.obs_coords()})
            groups = {
                "posterior": post,
                "posterior_predictive": predictive_dataset(prog, flat, shape, seed=self.seed + 2),
                "log_likelihood": log_likelihood_dataset(prog, flat, shape),
                "prior": prior,
                "prior_predictive": prior_pred,
                "summary": _cap_ess(summary_dataset(post), self._post_attrs).assign_attrs(self._post_attrs),
            }
            groups["observed_data"], constant = split_constant_data(observed_dataset(prog))
            if constant is not None:
                groups["constant_data"] = constant
            if self._stats is not None:
                groups["sample_stats"] = sample_stats_dataset(self._stats, attrs=self._post_attrs)
        return groups

    def run_attrs(self) -> dict[str, Any]:
        return {k: v for k, v in self._post_attrs.items() if isinstance(v, (str, int, float, bool))}

    # ---- queries ------------------------------------------------------------------------------------
    def _pick(self, run: Run, n: int, seed: int) -> tuple[xr.Dataset, np.ndarray]:
        post = run.group("posterior").stack(sample=("chain", "draw"))
        total = post.sizes["sample"]
        if not 1 <= n <= total:
            raise ValueError(f"n must be between 1 and the {total} stored posterior draws, got {n}.")
        idx = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
        return post, idx

    def query_sample(self, run: Run, n: int, *, seed: int = 0, **kwargs: Any) -> xr.Dataset:
        """n posterior draws (without replacement) from the stored posterior: dims ("sample", ...)."""
        post, idx = self._pick(run, n, seed)
        out = post.isel(sample=idx).drop_vars(["chain", "draw", "sample"]).transpose("sample", ...)
        return out.assign_coords(sample=np.arange(n)).assign_attrs(n_draws=n)

    def query_predict(self, run: Run, times: Any = None, *, n: int = 200, seed: int = 0,
                      quantiles: tuple[float, ...] = (0.05, 0.5, 0.95), **kwargs: Any) -> xr.Dataset:
        """Posterior-predictive draws at `times` (default: the observed ones) from n stored draws.

        Returns `y` (sample, *obs_dims) with observation noise, `mu` the noise-free prediction, their
        `mean` with Monte Carlo standard error `mcse`, and `quantiles` of y along `quantile`.
        """
        self._bind_from_run(run)
        post, idx = self._pick(run, n, seed)
        with _dtype(self.dtype_name):
            params = {k: torch.as_tensor(post[k].isel(sample=idx).transpose("sample", ...).values,
                                         dtype=torch.get_default_dtype()) for k in self.program.parameter_names}
            x = None if times is None else torch.as_tensor(np.asarray(times, dtype=float))
            ds = predictive_dataset(self.program, params, (1, n), x=x, seed=seed)
        ds = ds.isel(chain=0).rename(draw="sample").drop_vars("chain")
        mean = ds[OBS].mean("sample")
        return ds.assign(
            mean=mean,
            mcse=ds[OBS].std("sample", ddof=1) / np.sqrt(n),
            quantiles=ds[OBS].quantile(list(quantiles), dim="sample"),
        ).assign_attrs(n_draws=n)


def _cap_ess(summary: xr.Dataset, attrs: dict[str, Any]) -> xr.Dataset:
    """Importance-resampled draws carry at most 1/(1/ESS_importance + 1/n) effective draws: cap `ess_bulk`."""
    if "ess_importance" not in attrs:
        return summary
    from nde_lab.prob.diagnostics import resampled_ess

    limit = resampled_ess(attrs["ess_importance"], int(attrs["n_draws_stored"]))
    summary["ess_bulk"] = np.minimum(summary["ess_bulk"], limit)
    summary["ess_bulk"].attrs["note"] = "capped at 1/(1/ESS_importance + 1/n): resampling adds no information"
    return summary


class SVITask(BayesTask):
    """Stochastic variational inference (Pyro) with an autoguide by name, one Adam step per batch.

    Main arguments:
        program: the probabilistic program.
        guide: "AutoNormal", "AutoMultivariateNormal", "AutoLowRankMultivariateNormal" or "AutoIAFNormal".
        elbo: "Trace_ELBO" or "TraceMeanField_ELBO" (analytic KL terms where Pyro has them).
        num_particles: ELBO particles per step, vectorised: one batched model call (one ODE solve).
        lr: Adam learning rate.

    Other arguments:
        num_chains, num_draws: stored variational draws, dims (chain, draw): independent blocks of iid
            guide draws (see docs/inference.md).
        laplace_init: start the guide at a batched multi-start MAP and its Laplace covariance.
        laplace_steps: Adam steps of the batched multi-start MAP search.
        init_scale: initial guide scale (unconstrained space) when not started at the Laplace fit.
    """

    model_family = "bayes_svi"

    def __init__(self, program: ProbProgram, *, guide: GuideName = "AutoMultivariateNormal",
                 elbo: Literal["Trace_ELBO", "TraceMeanField_ELBO"] = "Trace_ELBO", num_particles: int = 16,
                 lr: float = 0.01, num_chains: int = 4, num_draws: int = 1000, laplace_init: bool = False,
                 laplace_steps: int = 100, init_scale: float = 0.05, dtype: DType = "float64", seed: int = 0, num_prior_draws: int = 500) -> None:
        super().__init__(program, dtype=dtype, seed=seed, num_prior_draws=num_prior_draws)
        if guide not in GUIDES:
            raise RecipeError(f"model.guide must be one of {list(GUIDES)}, got {guide!r}.")
        if elbo not in ("Trace_ELBO", "TraceMeanField_ELBO"):
            raise RecipeError(f"model.elbo must be 'Trace_ELBO' or 'TraceMeanField_ELBO', got {elbo!r}.")
        if num_particles < 1 or num_chains < 1 or num_draws < 4 or not lr > 0:
            raise RecipeError("model.num_particles >= 1, num_chains >= 1, num_draws >= 4 and lr > 0 are required; got "
                              f"{num_particles}, {num_chains}, {num_draws}, {lr}.")
        self.guide_name, self.elbo_name, self.num_particles, self.lr = guide, elbo, num_particles, lr
        self.num_chains, self.num_draws = num_chains, num_draws
        self.laplace_init, self.laplace_steps, self.init_scale = laplace_init, laplace_steps, init_scale
        self.automatic_optimization = False
        object.__setattr__(self, "_guide", None)  # not a submodule: checkpoints stay restorable without data

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self._guide is not None:
            return
        with _dtype(self.dtype_name):
            pyro.set_rng_seed(self.seed)
            pyro.clear_param_store()
            guide = make_guide(self.guide_name, self.program, init_scale=self.init_scale)
            if self.laplace_init:
                start = laplace_start(self.program, steps=self.laplace_steps, seed=self.seed)
                init_guide_at(guide, start)
                self._post_attrs["laplace_log_density"] = start.log_density
            else:
                guide()
            object.__setattr__(self, "_guide", guide)
            cls = getattr(pyro.infer, self.elbo_name)
            object.__setattr__(self, "_elbo", cls(num_particles=self.num_particles, vectorize_particles=self.num_particles > 1,
                                                  max_plate_nesting=0))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self._guide.parameters(), lr=self.lr)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        opt = self.optimizers()
        with _dtype(self.dtype_name):
            opt.zero_grad()
            loss = self._elbo.differentiable_loss(self.program.model, self._guide)
            if not torch.isfinite(loss):
                raise NdeLabError(
                    f"SVI loss became non-finite ({float(loss)}) at step {self.global_step} (epoch "
                    f"{self.current_epoch}); no posterior is written. Lower model.lr, start from "
                    "model.laplace_init: true, or check the priors' scales."
                )
            self.manual_backward(loss)
            opt.step()
        self.log("elbo_loss", float(loss.detach()), on_step=False, on_epoch=True, prog_bar=True)
        return loss.detach()

    def _finish(self) -> None:
        with _dtype(self.dtype_name), torch.no_grad():
            pyro.set_rng_seed(self.seed)
            values, _ = sample_guide(self._guide, self.num_chains * self.num_draws)
            self._draws = {k: values[k].reshape(self.num_chains, self.num_draws, *values[k].shape[1:])
                           for k in self.program.parameter_names}
        self._post_attrs.update(method="svi", guide=self.guide_name, elbo=self.elbo_name,
                                draws="independent guide draws; chains are independent blocks")

    def on_train_end(self) -> None:
        self._finish()


class FastPosteriorTask(SVITask):
    """The lab's fast exact-posterior method: batched multi-start MAP + Laplace start, a short
    vectorised SVI refinement of an AutoMultivariateNormal guide, then Pareto-smoothed importance
    resampling from a Student-t proposal fitted to the guide (k stored; k < 0.7 means reliable).

    Every stage evaluates all its parameter sets in one batched ODE solve (see docs/inference.md).

    Other arguments (beyond SVITask's):
        num_proposals: importance proposals in total (split into `num_chains` blocks that are resampled
            independently into `num_draws` draws each).
        proposal_df: degrees of freedom of the Student-t proposal.
        k_threshold: above this Pareto k the run fails rather than store an unreliable posterior; default
            the sample-size-aware min(1 - 1/log10(S), 0.7) of Vehtari et al. (2024) for S proposals.
        tail_check: also check every parameter's 1% tails (`nde_lab.prob.diagnostics.tail_check`): a
            proposal whose tails are too light for the target fails the round even when Pareto k passes.
        adapt_rounds: fallback rounds when a round fails (Pareto k or tail check): refit a Student-t with
            `fallback_df` to the round's PSIS-weighted draws and propose afresh (`nde_lab.prob.importance`);
            0 refuses at once. When every round fails the run fails, naming the problem and NUTSTask.
            The posterior attrs record `proposal`, `proposal_rounds`, `fallback` and `importance_rounds`.
        fallback_df: degrees of freedom of the refitted proposals (heavier-tailed than `proposal_df`).
    """

    model_family = "bayes_fast"

    def __init__(self, program: ProbProgram, *, num_particles: int = 32, lr: float = 0.005, num_chains: int = 4,
                 num_draws: int = 1000, num_proposals: int = 16000, proposal_df: float = 8.0,
                 k_threshold: float | None = None, tail_check: bool = True, adapt_rounds: int = 2, fallback_df: float = 3.0,
                 laplace_steps: int = 100, dtype: DType = "float64", seed: int = 0, num_prior_draws: int = 500) -> None:
        super().__init__(program, guide="AutoMultivariateNormal", elbo="Trace_ELBO", num_particles=num_particles,
                         lr=lr, num_chains=num_chains, num_draws=num_draws, laplace_init=True,
                         laplace_steps=laplace_steps, dtype=dtype,
                         seed=seed, num_prior_draws=num_prior_draws)
        if num_proposals < num_chains * num_draws:
            raise RecipeError(f"model.num_proposals ({num_proposals}) must be >= num_chains * num_draws "
                              f"({num_chains * num_draws}).")
        if adapt_rounds < 0 or not fallback_df > 0:
            raise RecipeError(f"model.adapt_rounds must be >= 0 and model.fallback_df > 0, got {adapt_rounds} and {fallback_df}.")
        from nde_lab.prob.diagnostics import pareto_k_threshold

        self.adapt_rounds, self.fallback_df = adapt_rounds, float(fallback_df)

        self.num_proposals, self.proposal_df, self.tail_check = num_proposals, proposal_df, tail_check
        self.k_threshold = pareto_k_threshold(num_proposals) if k_threshold is None else float(k_threshold)

    def _finish(self) -> None:
        from nde_lab.prob.importance import adaptive_importance

        with _dtype(self.dtype_name):
            pyro.set_rng_seed(self.seed)
            proposal = StudentTProposal.from_guide(self.program, self._guide, df=self.proposal_df)
            per_chain = self.num_proposals // self.num_chains
            out = adaptive_importance(
                self.program, proposal, description=f"multivariate Student-t (df={self.proposal_df:g}) fitted to the guide",
                num_chains=self.num_chains, per_chain=per_chain, seed=self.seed, k_threshold=self.k_threshold,
                check_tails=self.tail_check, adapt_rounds=self.adapt_rounds, fallback_df=self.fallback_df)
        res = out.result
        self._post_attrs.update(method="svi+psis", guide="AutoMultivariateNormal", pareto_k=float(res.pareto_k),
                                ess_importance=float(res.ess_is), n_proposals=int(res.n_proposals),
                                n_draws_stored=int(self.num_chains * self.num_draws), proposal=out.proposal,
                                proposal_rounds=out.rounds, fallback=out.fallback,
                                importance_rounds="\n".join(out.history), pareto_k_threshold=self.k_threshold,
                                tail_check="off" if not self.tail_check else
                                ("failed" if any(p.startswith("tail check") for p in out.problems) else "passed"))
        if out.problems:
            self._draws = None
            tried = ("the guide's Student-t proposal" if out.rounds == 1 else
                     f"{out.rounds} proposals (the guide's Student-t, then {out.rounds - 1} adaptive df={self.fallback_df:g} refit(s))")
            k_note = "" if any(p.startswith("Pareto k") for p in out.problems) else (
                f" (Pareto k {res.pareto_k:.3f} < {self.k_threshold:.2f} passed, which is not enough)")
            raise NdeLabError(
                f"importance correction unreliable after {tried}: {'; '.join(out.problems)}. The importance-"
                f"resampled posterior (its tails above all) would be wrong, so no posterior is written{k_note}. "
                "Use NUTSTask for this model (model.class_path: nde_lab.train.bayes.NUTSTask), or raise "
                "model.adapt_rounds / model.num_proposals, or train the guide longer (trainer.max_epochs)."
            )
        # keep num_draws per chain: an evenly spaced subset of each resampled block
        keep = np.linspace(0, per_chain - 1, self.num_draws).round().astype(int)
        self._draws = {k: v[:, keep] for k, v in res.draws.items()}
        if out.rounds > 1:
            print(f"nde-lab: fallback used: {out.proposal}", file=sys.stderr)


class NUTSTask(BayesTask):
    """NUTS (Hoffman & Gelman 2014) through `pyro.infer.MCMC`, run once in the first training step.

    Main arguments:
        program: the probabilistic program.
        num_chains, warmup, draws: chains, warm-up iterations and kept draws per chain.
        chain_processes: chains run this many at a time in spawned worker processes (1: in turn, in
            this process); chain c is seeded with seed + c whichever process runs it.
        init: "prior" starts every chain at the prior median with a unit mass matrix; "laplace" runs
            the fast posterior's batched multi-start MAP + Laplace fit (`nde_lab.prob.fast.laplace_start`)
            and starts chain c at u_map + N(0, init_jitter^2 cov) with cov as the initial inverse mass
            matrix, so warm-up does not spend its first windows finding the typical set.
        full_mass: adapt a dense mass matrix (correlated posteriors such as ODE rates) instead of a diagonal.

    Other arguments:
        target_accept: dual-averaging target acceptance probability.
        max_tree_depth: NUTS tree-depth cap (2^depth leapfrog steps per draw at most).
        init_jitter: scale of the start draws around the MAP, in Laplace standard deviations.
        laplace_screen, laplace_starts, laplace_steps: prior draws screened, Adam starts kept and Adam
            steps of the Laplace fit (each screened draw and step is one solve per start).
        progress: show Pyro's progress bar (in-process chains only).

    With chain_processes = 1, init = "prior" and full_mass = false the chains are Pyro NUTS on the
    program's model (`nde_lab.prob.inference.run_nuts`); otherwise NUTS runs on the flat unconstrained
    potential of `nde_lab.prob.nuts` (no Pyro trace per leapfrog step). The posterior attrs record
    chain_seconds, chain_started (Unix time, s), chain_pids and gradient_evaluations per chain.
    """

    model_family = "bayes_nuts"

    def __init__(self, program: ProbProgram, *, num_chains: int = 4, warmup: int = 500, draws: int = 500,
                 chain_processes: int = 1, init: Literal["prior", "laplace"] = "prior", full_mass: bool = False,
                 target_accept: float = 0.8, max_tree_depth: int = 10, init_jitter: float = 1.0,
                 laplace_screen: int = 512, laplace_starts: int = 8, laplace_steps: int = 100, progress: bool = True,
                 dtype: DType = "float64", seed: int = 0, num_prior_draws: int = 500) -> None:
        super().__init__(program, dtype=dtype, seed=seed, num_prior_draws=num_prior_draws)
        if num_chains < 1 or warmup < 1 or draws < 4 or not 0 < target_accept < 1:
            raise RecipeError("NUTSTask needs num_chains >= 1, warmup >= 1, draws >= 4 and 0 < target_accept < 1; got "
                              f"{num_chains}, {warmup}, {draws}, {target_accept}.")
        if chain_processes < 1:
            raise RecipeError(f"model.chain_processes must be >= 1, got {chain_processes}.")
        if init not in ("prior", "laplace"):
            raise RecipeError(f"model.init must be 'prior' or 'laplace', got {init!r}.")
        if not init_jitter >= 0 or min(laplace_screen, laplace_starts, laplace_steps) < 1 or laplace_starts > laplace_screen:
            raise RecipeError("model.init_jitter >= 0 and 1 <= model.laplace_starts <= model.laplace_screen, "
                              f"model.laplace_steps >= 1 are required; got {init_jitter}, {laplace_starts}, "
                              f"{laplace_screen}, {laplace_steps}.")
        self.num_chains, self.warmup, self.draws = num_chains, warmup, draws
        self.chain_processes, self.init, self.full_mass = chain_processes, init, full_mass
        self.init_jitter = init_jitter
        self.laplace_screen, self.laplace_starts, self.laplace_steps = laplace_screen, laplace_starts, laplace_steps
        self.target_accept, self.max_tree_depth, self.progress = target_accept, max_tree_depth, progress
        self.automatic_optimization = False

    def configure_optimizers(self) -> None:
        return None

    def _run(self) -> None:
        if self.chain_processes == 1 and self.init == "prior" and not self.full_mass:
            res = run_nuts(self.program, num_chains=self.num_chains, warmup=self.warmup, draws=self.draws,
                           seed=self.seed, target_accept=self.target_accept, max_tree_depth=self.max_tree_depth,
                           progress=self.progress)
            self._draws, self._stats = res.draws, res.stats
            self._post_attrs.update(seconds=round(res.seconds, 2))
            return
        from nde_lab.prob.nuts import run_nuts_parallel

        u_map = cov = None
        if self.init == "laplace":
            import time

            start = time.perf_counter()
            fit = laplace_start(self.program, n_screen=self.laplace_screen, n_starts=self.laplace_starts,
                                steps=self.laplace_steps, seed=self.seed)
            u_map, cov = fit.u_map.double().numpy(), fit.cov.double().numpy()
            self._post_attrs.update(laplace_seconds=round(time.perf_counter() - start, 2),
                                    laplace_log_density=float(fit.log_density))
        res, facts = run_nuts_parallel(
            self.program, num_chains=self.num_chains, warmup=self.warmup, draws=self.draws, seed=self.seed,
            target_accept=self.target_accept, max_tree_depth=self.max_tree_depth, full_mass=self.full_mass,
            workers=self.chain_processes, u_map=u_map, cov=cov, jitter=self.init_jitter, dtype=self.dtype_name)
        self._draws, self._stats = res.draws, res.stats
        self._post_attrs.update(
            seconds=round(res.seconds, 2), chain_processes=int(facts["workers"]), init=self.init,
            full_mass=bool(self.full_mass), chain_seconds=" ".join(f"{s:g}" for s in facts["chain_seconds"]),
            chain_started=" ".join(f"{t:.3f}" for t in facts["chain_started"]),
            chain_pids=" ".join(str(p) for p in facts["chain_pids"]),
            gradient_evaluations=" ".join(str(n) for n in facts["gradient_evaluations"]))

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if self._draws is None:
            with _dtype(self.dtype_name):
                self._run()
            n_div = int(self._stats["diverging"].sum())
            self._post_attrs.update(method="nuts", num_chains=self.num_chains, warmup=self.warmup, draws=self.draws,
                                    divergences=n_div)
            seconds = self._post_attrs["seconds"]
            msg = f"nde-lab: NUTS finished in {seconds:.1f} s: {n_div} divergent transition(s) after warm-up"
            if n_div:
                per_chain = self._stats["diverging"].sum(axis=1).tolist()
                msg += f" (per chain {per_chain}); see sample_stats.diverging. Raise model.target_accept or reparameterise."
            print(msg, file=sys.stderr)
            self.log("divergences", float(n_div), on_step=False, on_epoch=True)
        self.trainer.should_stop = True
        return None
