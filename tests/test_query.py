"""Monte Carlo queries: estimates against closed forms within their own stated error."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from cli import RECIPES, run_cli
from scipy import stats

import nde_lab
from nde_lab.query import expect, expect_draws, interval, prob


def _normal_sampler(mu: float, sd: float):
    def draws(n: int, seed: int) -> xr.Dataset:
        x = np.random.default_rng(seed).normal(mu, sd, size=(n, 2))
        return xr.Dataset({"x": (("sample", "dim"), x)})

    return draws


def test_expectation_is_within_four_mcse_and_mcse_is_sd_over_root_n():
    result = expect(_normal_sampler(1.5, 2.0), lambda ds: ds.x, n=5000, batch=700)
    assert result.attrs["n_draws"] == 5000
    np.testing.assert_allclose(result.mcse, 2.0 / math.sqrt(5000), rtol=0.05)
    assert (abs(result.estimate - 1.5) < 4 * result.mcse).all()


def test_target_precision_draws_until_reached():
    result = expect(_normal_sampler(0.0, 1.0), lambda ds: ds.x.sum("dim"), target_mcse=0.01, batch=2000)
    # sd of the sum is sqrt(2): n = 2 / 0.01^2 = 20000 draws, rounded up to whole batches
    assert float(result.mcse) <= 0.01 and 20000 <= result.attrs["n_draws"] <= 24000
    assert result.attrs["converged"]


def test_probability_against_the_normal_cdf():
    result = prob(_normal_sampler(0.0, 1.0), lambda ds: ds.x.isel(dim=0) > 1.0, n=20000)
    p = 1 - stats.norm.cdf(1.0)
    np.testing.assert_allclose(float(result.mcse), math.sqrt(p * (1 - p) / 20000), rtol=0.05)
    assert abs(float(result.estimate) - p) < 4 * float(result.mcse)


def test_interval_ends_against_normal_quantiles_within_their_mcse():
    out = interval(_normal_sampler(0.0, 1.0), lambda ds: ds.x.isel(dim=0), level=0.9, n=20000)
    for end, q, k in (("lower", -1.6448536, 0), ("upper", 1.6448536, 1)):
        mcse = float(out.mcse.isel(quantile=k))
        assert abs(float(out[end]) - q) < 4 * mcse
        # asymptotic se of a quantile: sqrt(p(1-p)/n) / density(q)
        se = math.sqrt(0.05 * 0.95 / 20000) / stats.norm.pdf(q)
        np.testing.assert_allclose(mcse, se, rtol=0.25)


def test_mcmc_draws_use_the_effective_sample_size():
    """AR(1) chains with coefficient rho: ESS = n (1 - rho) / (1 + rho)."""
    rng = np.random.default_rng(2)
    rho, chains, n = 0.8, 4, 5000
    x = np.zeros((chains, n))
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + math.sqrt(1 - rho**2) * rng.normal(size=chains)
    draws = xr.Dataset({"theta": (("chain", "draw"), x)})
    result = expect_draws(draws, lambda ds: ds.theta)
    expected_ess = chains * n * (1 - rho) / (1 + rho)
    np.testing.assert_allclose(float(result.ess), expected_ess, rtol=0.2)
    np.testing.assert_allclose(float(result.mcse), 1 / math.sqrt(expected_ess), rtol=0.2)


@pytest.mark.parametrize(
    "kwargs,match",
    [({}, "exactly one of n"), ({"n": 10, "target_mcse": 0.1}, "exactly one of n"), ({"n": 1}, "n must be a whole number >= 2"),
     ({"target_mcse": -1.0}, "target_mcse must be a positive")],
)
def test_query_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        expect(_normal_sampler(0, 1), lambda ds: ds.x, **kwargs)


def test_a_statistic_that_drops_the_sample_dimension_is_refused():
    with pytest.raises(ValueError, match="along a 'sample' dimension"):
        expect(_normal_sampler(0, 1), lambda ds: ds.x.mean("sample"), n=100)


@pytest.fixture(scope="module")
def ou_run(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    out = run_cli("fit", "--config", str(RECIPES / "ou_fit.yaml"), "--trainer.max_epochs", "2", store=store)
    assert out.returncode == 0, out.stderr[-3000:]
    return nde_lab.open_run(store / "ou_fit" / "latest")


def test_run_expectation_matches_the_fitted_ou_closed_form(ou_run):
    params = ou_run.tree["parameters"].to_dataset()
    theta, mu, sigma = (float(params["value"].sel(parameter=p).squeeze()) for p in ("theta", "mu", "sigma"))
    times = np.array([0.0, 0.5, 1.0, 2.0])
    result = ou_run.expect(lambda ds: ds.y.isel(state=0), n=4000, batch=1000, times=times, x0=0.0)
    mean = mu * (1 - np.exp(-theta * times[1:]))
    assert (np.abs(result.estimate.values[1:] - mean) < 4 * result.mcse.values[1:] + 1e-3).all()
    var = sigma**2 * (1 - np.exp(-2 * theta * times[1:])) / (2 * theta)
    np.testing.assert_allclose(result.mcse.values[1:], np.sqrt(var / 4000), rtol=0.1)
    assert result.attrs["n_draws"] == 4000


def test_run_probability_and_interval(ou_run):
    params = ou_run.tree["parameters"].to_dataset()
    theta, mu, sigma = (float(params["value"].sel(parameter=p).squeeze()) for p in ("theta", "mu", "sigma"))
    t = 2.0
    mean = mu * (1 - math.exp(-theta * t))
    sd = sigma * math.sqrt((1 - math.exp(-2 * theta * t)) / (2 * theta))
    p = ou_run.prob(lambda ds: ds.y.isel(time=-1, state=0) > mean + sd, n=4000, times=[0.0, t], x0=0.0)
    assert abs(float(p.estimate) - (1 - stats.norm.cdf(1.0))) < 4 * float(p.mcse) + 2e-3
    band = ou_run.interval(lambda ds: ds.y.isel(time=-1, state=0), level=0.9, n=4000, times=[0.0, t], x0=0.0)
    lower_mcse, upper_mcse = (float(v) for v in band.mcse.values)
    assert abs(float(band.lower) - (mean - 1.6449 * sd)) < 4 * lower_mcse + 2e-3
    assert abs(float(band.upper) - (mean + 1.6449 * sd)) < 4 * upper_mcse + 2e-3


def test_dataset_accessor_summary_band_coverage_and_error():
    rng = np.random.default_rng(3)
    times = np.linspace(0.0, 1.0, 11)
    paths = xr.Dataset(
        {"y": (("sample", "time", "state"), rng.normal(size=(20000, 11, 1)))},
        coords={"time": times, "state": ["a"]},
    )
    summary = paths.nde.summary()
    assert (np.abs(summary["mean"]) < 4 * summary["mcse"]).all()
    band = paths.nde.band(0.9)
    np.testing.assert_allclose(band["upper"], 1.6449, atol=0.05)
    observed = xr.Dataset({"y": (("time", "state"), rng.normal(size=(200, 1)))},
                          coords={"time": np.linspace(0, 1, 200), "state": ["a"]})
    coverage = paths.nde.coverage(observed, 0.9)
    assert abs(coverage - 0.9) < 3 * math.sqrt(0.09 / 200) + 0.01
    line = xr.Dataset({"y": (("time", "state"), 2 * times[:, None])}, coords={"time": times, "state": ["a"]})
    target = xr.Dataset({"y": (("time", "state"), np.array([[0.1], [1.0]]))}, coords={"time": [0.05, 0.5], "state": ["a"]})
    err = line.nde.error(target)
    np.testing.assert_allclose(err["mae"].values, [0.0])
    with pytest.raises(ValueError, match="no ensemble dimension"):
        line.nde.band()
