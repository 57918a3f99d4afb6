"""Errors that respect what draws carry: stored posterior draws, importance-resampled draws, MCMC chains
in the accessor, and the fast posterior's Pareto-k rule and tail check (issue 9)."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pytest
import xarray as xr
from cli import RECIPES, run_cli
from scipy import stats

import nde_lab
import nde_lab.query
from nde_lab.prob.diagnostics import (
    pareto_k_threshold,
    psis,
    resampled_ess,
    systematic_resample,
    tail_check,
)


def _ar1(phi: float, chains: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((chains, n))
    x[:, 0] = rng.normal(size=chains)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + math.sqrt(1 - phi**2) * rng.normal(size=chains)
    return x


def test_accessor_mcse_on_ar1_chains_matches_arviz():
    """sd/sqrt(n) was 4x too small for phi = 0.9; the accessor now uses ArviZ's ESS for the mean."""
    x = _ar1(0.9, 4, 2000, seed=0)
    ds = xr.Dataset({"y": (("chain", "draw", "time"), np.stack([x, 3 * x], -1))})
    summary = ds.nde.summary()
    theirs = float(az.mcse(az.convert_to_dataset(x), method="mean")["x"])
    np.testing.assert_allclose(summary["mcse"].values, [theirs, 3 * theirs], rtol=0.1)
    assert float(summary["mcse"][0]) > 3 * float(summary["std"][0]) / math.sqrt(8000)
    # quantiles and band ends carry an error too, of the order of ArviZ's quantile MCSE
    theirs_q = float(az.mcse(az.convert_to_dataset(x), method="quantile", prob=0.95)["x"])
    band = ds.nde.band(0.9)
    np.testing.assert_allclose(float(band["mcse"].sel(quantile=0.95).isel(time=0)), theirs_q, rtol=0.35)


def test_importance_resampled_draws_carry_the_stated_effective_size():
    """n draws resampled from S weighted proposals carry 1/(1/ESS_is + 1/n) effective draws, not n.

    Over repetitions, the variance of their mean stays below the stated sd^2 (1/ESS_is + 1/n) (the
    Kish ESS is cautious for a mean, and systematic resampling adds less than 1/n), so the stated
    effective size is honest (never above the truth), while the raw count n overstates it.
    """
    rng = np.random.default_rng(1)
    s = n = 4000
    reps = 300
    means, stated, ess_is = [], [], []
    for _ in range(reps):
        u = rng.normal(0.0, 3.0, size=s)  # proposal N(0, 3^2) for the target N(0.3, 1)
        lw = stats.norm.logpdf(u, 0.3, 1.0) - stats.norm.logpdf(u, 0.0, 3.0)
        smoothed, _ = psis(lw)
        ess_is.append(1.0 / np.sum(np.exp(smoothed) ** 2))
        means.append(u[systematic_resample(smoothed, n, rng=rng)].mean())
        stated.append(resampled_ess(ess_is[-1], n))
    empirical = 1.0 / np.var(means, ddof=1)  # target sd is 1
    assert abs(np.mean(means) - 0.3) < 4 / math.sqrt(reps * np.mean(stated))
    sampling = math.sqrt(2 / reps)  # relative error of a variance from `reps` repetitions
    assert np.mean(stated) < empirical * (1 + 3 * sampling)  # honest: never above the true effective size
    assert empirical * (1 + 3 * sampling) < n  # while the raw count overstates it


def test_pareto_k_threshold_follows_the_sample_size_rule():
    for s, k in ((100, 0.5), (1000, 1 - 1 / 3), (16000, 0.7), (10**6, 0.7)):
        assert pareto_k_threshold(s) == pytest.approx(min(1 - 1 / math.log10(s), 0.7))
        assert pareto_k_threshold(s) == pytest.approx(k)


def test_tail_check_refuses_a_proposal_lighter_than_the_target():
    """A normal proposal for a Student-t(3) target passes Pareto k at moderate S but cuts the tails."""
    rng = np.random.default_rng(2)
    u = rng.normal(0.0, 1.0, size=16000)
    heavy = stats.t.logpdf(u, df=3) - stats.norm.logpdf(u)
    light = stats.norm.logpdf(u, 0.0, 0.7) - stats.norm.logpdf(u)
    assert tail_check(u[:, None], heavy), "a cut tail passed"
    assert tail_check(u[:, None], light) == []


@pytest.fixture(scope="module")
def rugged_run(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    out = run_cli("fit", "--config", str(RECIPES / "rugged_regression_svi.yaml"), "--trainer.max_epochs", "1",
                  "--data.init_args.steps_per_epoch", "100", "--model.init_args.lr", "0.05",
                  "--model.init_args.num_draws", "250", store=store)
    assert out.returncode == 0, out.stderr[-3000:]
    return nde_lab.open_run(store / "rugged_regression_svi" / "latest")


def test_stored_draws_bound_the_precision_of_every_answer(rugged_run):
    """Resampling the 1000 stored draws again cannot beat sd/sqrt(ESS of the stored draws)."""
    a = rugged_run.posterior["a"].values  # (chain, draw)
    ess = float(az.ess(az.convert_to_dataset(a), method="mean")["x"])
    floor = a.std(ddof=1) / math.sqrt(ess)
    stored = rugged_run.expect(lambda ds: ds.a, draws="posterior")
    assert float(stored.mcse) == pytest.approx(floor, rel=0.02)
    assert stored.attrs["draws"] == "stored variational draws" and stored.attrs["n_draws"] == 1000
    for kw in ({"n": 500}, {"n": 1000}, {"target_mcse": floor / 4}):
        answer = rugged_run.expect(lambda ds: ds.a, **kw)
        assert float(answer.mcse) >= floor * 0.98, kw  # never below sd/sqrt(ESS)
        assert float(answer.ess) <= ess * 1.02
    short = rugged_run.expect(lambda ds: ds.a, target_mcse=floor / 4)
    assert not short.attrs["converged"] and "refit with more draws" in short.attrs["message"]
    assert short.attrs["n_draws"] <= 1000  # it stops as soon as the pool's limit is known
    p = rugged_run.prob(lambda ds: ds.a > float(np.median(a)), target_mcse=1e-3)
    assert not p.attrs["converged"] and float(p.mcse) > 0.01
