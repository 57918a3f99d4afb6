"""Every Bayesian recipe through the real `nde-lab fit` on a tiny budget; ArviZ reads the runs; errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import arviz as az
import numpy as np
import pytest
from figures_check import check_figures

import nde_lab

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {"posterior", "posterior_predictive", "log_likelihood", "observed_data", "prior", "prior_predictive", "summary"}


def _fit(recipe: str, store: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nde_lab.cli", "fit", "--config", str(ROOT / "recipes" / recipe), "--store", str(store),
           *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)


def _only_run(store: Path, experiment: str):
    (run_dir,) = (store / experiment).iterdir()
    return nde_lab.open_run(run_dir, allow_incomplete=True)


def _check_layout(run, names):
    assert set(run.tree.children) >= GROUPS
    post = run.posterior
    assert sorted(post.data_vars) == sorted(names)
    assert post[names[0]].dims[:2] == ("chain", "draw")
    pp = run.tree["posterior_predictive"].to_dataset()
    assert pp["y"].dims[:2] == ("chain", "draw")
    summ = run.summary
    assert {"mean", "sd", "quantiles", "r_hat", "ess_bulk"} <= set(summ.data_vars)


def _arviz_agrees(run, tmp_path):
    idata = run.to_arviz()
    assert "x" not in idata.observed_data  # covariates go to constant_data
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo) and loo.n_data_points == idata.observed_data["y"].size
    import matplotlib

    matplotlib.use("Agg")
    az.plot_ppc(idata, num_pp_samples=20)
    import matplotlib.pyplot as plt

    plt.savefig(tmp_path / "ppc.png")
    plt.close("all")
    assert (tmp_path / "ppc.png").stat().st_size > 1000
    theirs = az.summary(idata, group="posterior", kind="all", round_to="none")
    ours = run.summary
    for label in ours["parameter"].values:
        row = theirs.loc[str(label)]
        sel = ours.sel(parameter=label)
        assert float(sel["mean"]) == pytest.approx(row["mean"], rel=1e-9)
        assert float(sel["sd"]) == pytest.approx(row["sd"], rel=1e-9)
        assert float(sel["r_hat"]) == pytest.approx(row["r_hat"], rel=1e-9)
        ess = row["ess_bulk"]
        if "ess_importance" in run.summary.attrs:  # importance-resampled draws: capped at 1/(1/ESS_is + 1/n)
            ess = min(ess, 1 / (1 / run.summary.attrs["ess_importance"] + 1 / run.summary.attrs["n_draws_stored"]))
        assert float(sel["ess_bulk"]) == pytest.approx(ess, rel=1e-9)


def test_lotka_volterra_fast_recipe(tmp_path):
    proc = _fit("lotka_volterra_bayes.yaml", tmp_path, "--trainer.max_epochs", "1", "--data.init_args.steps_per_epoch", "3",
                "--model.init_args.laplace_steps", "30", "--model.init_args.num_proposals", "2000",
                "--model.init_args.num_draws", "200", "--model.init_args.k_threshold", "10",
                "--model.init_args.tail_check", "false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Pareto k" in proc.stderr
    run = _only_run(tmp_path, "lotka_volterra_bayes")
    _check_layout(run, ["alpha", "beta", "gamma", "delta", "z_init", "sigma"])
    assert run.posterior["z_init"].dims == ("chain", "draw", "state")
    assert run.tree["posterior_predictive"].to_dataset()["y"].dims == ("chain", "draw", "time", "state")
    assert np.isfinite(run.summary.attrs["pareto_k"])
    _arviz_agrees(run, tmp_path)
    pred = run.predict(np.linspace(0, 25, 6), n=40)
    assert pred["y"].dims == ("sample", "time", "state") and pred["quantiles"].sizes["quantile"] == 3
    assert pred.attrs["n_draws"] == 40 and bool((pred["mcse"] > 0).all())
    draws = run.sample(10)
    assert draws["alpha"].dims == ("sample",) and draws["z_init"].dims == ("sample", "state")


def test_lotka_volterra_nuts_recipe(tmp_path):
    proc = _fit("lotka_volterra_nuts.yaml", tmp_path, "--model.init_args.num_chains", "1", "--model.init_args.warmup", "2",
                "--model.init_args.draws", "4", "--model.init_args.max_tree_depth", "2",
                "--model.init_args.progress", "false", "--model.init_args.init", "prior",
                "--model.init_args.full_mass", "false", "--model.init_args.chain_processes", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _only_run(tmp_path, "lotka_volterra_nuts")
    _check_layout(run, ["alpha", "beta", "gamma", "delta", "z_init", "sigma"])
    stats = run.tree["sample_stats"].to_dataset()
    assert {"diverging", "acceptance_rate", "step_size", "tree_depth"} <= set(stats.data_vars)
    assert int(stats["tree_depth"].max()) <= 3


@pytest.mark.slow
def test_rugged_nuts_recipe_and_arviz(tmp_path):
    proc = _fit("rugged_regression.yaml", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "divergent" in proc.stderr
    run = _only_run(tmp_path, "rugged_regression")
    _check_layout(run, ["a", "bA", "bR", "bAR", "sigma"])
    check_figures("rugged_regression", run)
    assert float(run.summary["r_hat"].max()) <= 1.01  # README: R-hat <= 1.01 at the recipe's budget
    _arviz_agrees(run, tmp_path)
    assert run.tree["log_likelihood"].to_dataset()["y"].dims == ("chain", "draw", "obs")


@pytest.mark.slow
def test_rugged_svi_recipe(tmp_path):
    proc = _fit("rugged_regression_svi.yaml", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _only_run(tmp_path, "rugged_regression_svi")
    _check_layout(run, ["a", "bA", "bR", "bAR", "sigma"])
    assert run.posterior.sizes["chain"] == 4
    check_figures("rugged_regression_svi", run)
    assert bool(np.isfinite(run.summary["mean"]).all())
    loss = run.metrics["elbo_loss"].values
    assert loss[-1] < loss[0]  # the ELBO improved over training


def test_divergences_reported(tmp_path):
    # a huge target step (target_accept 0.01) makes the integrator diverge
    proc = _fit("rugged_regression.yaml", tmp_path, "--model.init_args.num_chains", "1", "--model.init_args.warmup", "30",
                "--model.init_args.draws", "30", "--model.init_args.target_accept", "0.01")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = _only_run(tmp_path, "rugged_regression")
    n_div = int(run.tree["sample_stats"].to_dataset()["diverging"].sum())
    assert n_div > 0
    assert f"{n_div} divergent transition(s)" in proc.stderr


def test_svi_non_finite_loss_fails_the_run(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("# overflowing covariate\nisocode,country,cont_africa,rugged,rgdppc_2000\n"
                   + "".join(f"X{i},x,0,1e200,{1000 + i}\n" for i in range(10)))
    store = tmp_path / "store"
    proc = _fit("rugged_regression_svi.yaml", store, "--trainer.max_epochs", "1", "--data.init_args.path", str(bad))
    assert proc.returncode == 1
    assert "non-finite" in proc.stderr and "at step 0" in proc.stderr
    run = _only_run(store, "rugged_regression_svi")
    assert run.status == "failed" and "posterior" not in run.tree.children


def test_nan_in_data_is_a_data_error(tmp_path):
    bad = tmp_path / "nan.csv"
    bad.write_text("isocode,country,cont_africa,rugged,rgdppc_2000\nA,a,0,1.0,NA\nB,b,1,2.0,900\n")
    proc = _fit("rugged_regression_svi.yaml", tmp_path / "store", "--data.init_args.path", str(bad))
    assert proc.returncode != 0
    assert "NaN" in proc.stderr
