"""`run.to_arviz()` on ArviZ 0.2x and 1.x, torch-free (tox env `arviz1` runs it on Python 3.12 with
ArviZ 1.x): a conjugate Bayesian linear regression stored as a run; ArviZ's summary matches the
closed-form posterior, PSIS-LOO matches exact leave-one-out, and the PPC plot is drawn to a file."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

import nde_lab
from nde_lab.store import RunWriter
from nde_lab.store.schema import split_constant_data

az = pytest.importorskip("arviz")  # in the test extras; the skip only covers a bare install

N, SIGMA, CHAINS, DRAWS = 30, 0.5, 4, 1000


def _regression_run(store):
    rng = np.random.default_rng(0)
    x = np.column_stack([np.ones(N), np.linspace(-1, 1, N)])
    y = x @ np.array([1.0, 2.0]) + SIGMA * rng.standard_normal(N)
    # flat prior, known sigma: beta | y ~ N((X'X)^-1 X'y, sigma^2 (X'X)^-1)
    cov = SIGMA**2 * np.linalg.inv(x.T @ x)
    mean = np.linalg.solve(x.T @ x, x.T @ y)
    beta = rng.multivariate_normal(mean, cov, size=(CHAINS, DRAWS))
    mu = beta @ x.T  # (chain, draw, obs)
    coords = {"chain": np.arange(CHAINS), "draw": np.arange(DRAWS), "obs": np.arange(N)}
    log_lik = -0.5 * ((y - mu) / SIGMA) ** 2 - math.log(SIGMA * math.sqrt(2 * math.pi))
    observed = xr.Dataset({"y": ("obs", y), "x": (("obs", "feature"), x)},
                          coords={"obs": np.arange(N), "feature": ["intercept", "slope"]})
    observed_data, constant_data = split_constant_data(observed)
    groups = {
        "posterior": xr.Dataset({"a": (("chain", "draw"), beta[..., 0]), "b": (("chain", "draw"), beta[..., 1])},
                                coords=coords),
        "posterior_predictive": xr.Dataset({"y": (("chain", "draw", "obs"), mu + SIGMA * rng.standard_normal(mu.shape))},
                                           coords=coords),
        "log_likelihood": xr.Dataset({"y": (("chain", "draw", "obs"), log_lik)}, coords=coords),
        "observed_data": observed_data,
        "constant_data": constant_data,
    }
    writer = RunWriter(store, "regression")
    writer.begin(recipe_yaml="", seed=0)
    writer.complete(groups, {"model_family": "bayes"})
    return x, y, mean, cov


def _exact_loo(x, y):
    total = 0.0
    for i in range(N):
        keep = np.arange(N) != i
        xtx = x[keep].T @ x[keep]
        beta = np.linalg.solve(xtx, x[keep].T @ y[keep])
        var = SIGMA**2 * (1 + x[i] @ np.linalg.solve(xtx, x[i]))
        total += -0.5 * (y[i] - x[i] @ beta) ** 2 / var - 0.5 * math.log(2 * math.pi * var)
    return total


def test_to_arviz_summary_loo_and_ppc(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y, mean, cov = _regression_run(tmp_path)
    run = nde_lab.open_run(tmp_path / "regression" / "latest")
    data = run.to_arviz()
    assert "x" not in data["observed_data"] and "x" in data["constant_data"]

    summary = az.summary(data, var_names=["a", "b"], kind="stats")
    sd_col = "sd" if "sd" in summary.columns else next(c for c in summary.columns if "sd" in c)
    for k, name in enumerate(["a", "b"]):
        se = math.sqrt(cov[k, k] / (CHAINS * DRAWS))
        assert float(summary.loc[name, "mean"]) == pytest.approx(mean[k], abs=5 * se)
        assert float(summary.loc[name, sd_col]) == pytest.approx(math.sqrt(cov[k, k]), rel=0.05)

    loo = az.loo(data)
    elpd = loo.elpd_loo if hasattr(loo, "elpd_loo") else loo.elpd
    assert float(elpd) == pytest.approx(_exact_loo(x, y), abs=0.3)

    if hasattr(az, "plot_ppc_dist"):  # ArviZ 1.x
        az.plot_ppc_dist(data)
    else:
        az.plot_ppc(data, num_pp_samples=50)
    plt.savefig(tmp_path / "ppc.png")
    plt.close("all")
    assert (tmp_path / "ppc.png").stat().st_size > 1000
