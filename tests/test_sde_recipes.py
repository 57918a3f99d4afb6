"""Every stochastic-dynamics recipe through the real `nde-lab` CLI, checked through `open_run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from figures_check import check_figures

import nde_lab

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def _fit(recipe: str, store: Path, *overrides: str):
    cmd = [sys.executable, "-m", "nde_lab.cli", "fit", "--config", str(RECIPES / recipe), "--store", str(store), *overrides]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = (store / Path(recipe).stem).iterdir()
    return nde_lab.open_run(run_dir)


def _all_finite(run) -> None:
    for node in run.tree.subtree:
        for name, var in node.dataset.data_vars.items():
            if var.dtype.kind == "f":
                assert np.isfinite(var.values).all(), (node.path, name)


def _check_sampling(run) -> None:
    stored = run.trajectories
    again = run.sample(stored.sizes["sample"])  # the stored seed regenerates the stored paths
    assert again["y"].dims == ("sample", "time", "state")
    assert np.array_equal(again["y"].values, stored["y"].values)
    other = run.sample(5, seed=int(run.attrs["sampling_seed"]) + 1)
    assert not np.allclose(other["y"].values, stored["y"].values[:5])


def test_ou_fit_recipe_recovers_theta_mu_sigma(tmp_path):
    """Truth theta=1, mu=2, sigma=0.5; tolerance 4 standard errors of the observed information
    (about 0.12, 0.07, 0.02: see test_sde_models.test_ou_mle_recovers_parameters_within_four_standard_errors)."""
    run = _fit("ou_fit.yaml", tmp_path)
    assert run.attrs["model_family"] == "sde" and run.attrs["sampling_seed"] == 0
    params = run.group("parameters")
    for name, truth in {"theta": 1.0, "mu": 2.0, "sigma": 0.5}.items():
        est = params["value"].sel(parameter=name).values.item()
        se = params["std_error"].sel(parameter=name).values.item()
        assert abs(est - truth) < 4 * se, (name, est, se)
    check_figures("ou_fit", run)
    summary = run.summary
    assert summary["quantiles"].dims == ("quantile", "time", "state")
    assert int(run.group("solver_stats")["masked_paths"]) == 0
    assert run.observed["y"].shape == (100, 51, 1)
    _all_finite(run)
    _check_sampling(run)
    pred = run.predict([1.0, 5.0], n=400)
    assert pred.attrs["n_draws"] == 400 and "mcse" in pred


def test_nile_recipe_matches_an_independent_mle(tmp_path):
    run = _fit("nile_ou.yaml", tmp_path)
    params = run.group("parameters")
    # scipy Nelder-Mead on the same exact OU likelihood: theta 0.68455, mu 913.418, sigma 196.488
    reference = {"theta": 0.68455, "mu": 913.418, "sigma": 196.488}
    for name, ref in reference.items():
        assert params["value"].sel(parameter=name).values.item() == pytest.approx(ref, rel=1e-3), name
    assert params.attrs["log_likelihood"] == pytest.approx(-633.1763, abs=1e-3)
    check_figures("nile_ou", run)
    assert run.observed["time"].values[0] == 1871
    _all_finite(run)
    _check_sampling(run)


def test_gbm_latent_sde_recipe_runs_on_a_tiny_budget(tmp_path):
    run = _fit("gbm_latent_sde.yaml", tmp_path, "--trainer.max_epochs", "2", "--data.init_args.n_paths", "32",
               "--model.init_args.n_samples", "10")
    assert run.attrs["model_family"] == "latent_sde"
    assert run.group("posterior_predictive")["y"].dims == ("sample", "path", "time", "state")
    assert {"coverage_90", "mean", "std", "quantiles"} <= set(run.summary.data_vars)
    _all_finite(run)
    _check_sampling(run)
    # the generative model's off-grid output times are step ends of a refined grid, never interpolated
    # (torchsde would interpolate linearly between its steps: too little variance there); the answer says how
    t0 = float(run.observed["time"].values[0])
    dt = float(run.attrs.get("solver_dt", 0) or run.group("solver_stats").attrs["dt"])
    times = t0 + np.array([0.0, 0.3, 1.0, 2.5]) * dt
    paths = run.sample(200, times=times, seed=3)
    assert paths.attrs["method"] in ("euler", "milstein", "srk", "midpoint", "heun", "reversible_heun")
    # intervals 0.3, 0.7 and 1.5 dt take 1, 1 and 2 equal steps: the largest step is 0.75 dt
    assert paths.attrs["step"] == pytest.approx(0.75 * dt)
    y = paths["y"].values
    assert y.shape == (200, 4, run.observed.sizes["state"]) and np.isfinite(y).all()


@pytest.mark.slow
def test_gbm_latent_sde_recipe_full_budget_elbo_improves_and_band_covers(tmp_path):
    """Full recipe (70 epochs): the 90% posterior-predictive band covered 0.919 of the n = 384 held-out
    observations (64 validation paths x 6 held-out times; 0.904 without the held-out time 0.005 next to t = 0).

    Tolerance: 0.90 +- (3 binomial standard errors sqrt(0.9 * 0.1 / 384) = 0.046, plus 0.02 for model
    misfit: the fitted homoscedastic observation noise (0.18 against a true 0.05) absorbs the posterior's
    misfit, which grows with the GBM's level, and the six held-out times of one path are correlated),
    i.e. [0.834, 0.966].
    """
    run = _fit("gbm_latent_sde.yaml", tmp_path)
    elbo = run.metrics["train_elbo"].values
    assert elbo[-5:].mean() > elbo[0] + 500, elbo
    assert int(run.summary["n_heldout"]) == 384
    coverage = float(run.summary["coverage_90"])
    assert 0.834 <= coverage <= 0.966, coverage
    check_figures("gbm_latent_sde", run)
