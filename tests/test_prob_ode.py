"""Bayesian Lotka-Volterra: batched vector field, and posterior recovery of known parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nde_lab.dynamics.classic import LotkaVolterra
from nde_lab.prob import Likelihood, ODEProgram, Prior, SeriesData
from nde_lab.prob.fast import StudentTProposal, laplace_start
from nde_lab.prob.inference import importance_resample
from nde_lab.solvers.ode import ODESolverOptions, solve_ode

TRUTH = {"alpha": 0.55, "beta": 0.028, "gamma": 0.8, "delta": 0.024}


def test_batched_solve_equals_individual_solves(float64):
    gen = torch.Generator().manual_seed(0)
    n = 16
    rates = {k: v * (1 + 0.1 * torch.randn(n, generator=gen)) for k, v in TRUTH.items()}
    y0 = torch.log(torch.tensor([34.0, 6.0])).expand(n, 2)
    t = torch.arange(21.0)
    opts = ODESolverOptions(method="rk4", step_size=0.1)
    batched = solve_ode(LotkaVolterra(**rates, coordinates="log"), y0, t, opts).y  # (T, n, 2)
    for i in (0, 7, 15):
        single = solve_ode(LotkaVolterra(**{k: v[i] for k, v in rates.items()}, coordinates="log"), y0[i], t, opts).y
        torch.testing.assert_close(batched[:, i], single, rtol=1e-12, atol=1e-12)


def test_log_coordinates_solve_the_same_ode(float64):
    t = torch.linspace(0, 20, 41)
    z0 = torch.tensor([34.0, 6.0])
    opts = ODESolverOptions(method="dopri5", rtol=1e-10, atol=1e-10)
    natural = solve_ode(LotkaVolterra(**TRUTH), z0, t, opts).y
    logged = solve_ode(LotkaVolterra(**TRUTH, coordinates="log"), z0.log(), t, opts).y
    torch.testing.assert_close(logged.exp(), natural, rtol=1e-7, atol=1e-7)


def test_lotka_volterra_rejects_bad_shapes():
    with pytest.raises(ValueError, match="broadcastable"):
        LotkaVolterra(torch.ones(3), torch.ones(4), 1.0, 1.0)


@pytest.mark.slow
def test_truth_inside_90_percent_intervals(float64):
    priors = {
        "alpha": Prior("Normal", {"loc": 1.0, "scale": 0.5}, low=0.0),
        "beta": Prior("Normal", {"loc": 0.05, "scale": 0.05}, low=0.0),
        "gamma": Prior("Normal", {"loc": 1.0, "scale": 0.5}, low=0.0),
        "delta": Prior("Normal", {"loc": 0.05, "scale": 0.05}, low=0.0),
        "z_init": Prior("LogNormal", {"loc": math.log(10), "scale": 1.0}, shape=[2]),
        "sigma": Prior("LogNormal", {"loc": -1.0, "scale": 1.0}, shape=[2]),
    }
    prog = ODEProgram(priors=priors, likelihood=Likelihood(family="LogNormal", scale="sigma"))
    truth = {**{k: torch.tensor(v) for k, v in TRUTH.items()}, "z_init": torch.tensor([34.0, 6.0]),
             "sigma": torch.tensor([0.2, 0.2])}
    t = torch.arange(21.0)
    prog.bind(SeriesData(times=t, values=np.ones((21, 2)), state_names=["hare", "lynx"]))
    torch.manual_seed(1)
    y = prog.observation_dist(truth).sample()
    prog.bind(SeriesData(times=t, values=y, state_names=["hare", "lynx"]))
    start = laplace_start(prog, steps=100, seed=0)
    proposal = StudentTProposal(prog, start.u_map, start.cov, df=8.0)
    res = importance_resample(prog, proposal, num_chains=4, num_draws=2000, seed=0)
    assert res.pareto_k < 0.7
    # 8 scalar components: under calibration each misses its 90% interval with probability 0.1, so
    # "all 8 inside" would fail ~57% of seeds. So: at most 2 of 8 outside their 90% intervals
    # (Binomial(8, 0.1): P(X > 2) = 0.038, approximate as components are correlated) and none outside 99.9%.
    outside_90 = 0
    for name, value in truth.items():
        draws = res.draws[name].reshape(-1, *value.shape)
        lo, hi = torch.quantile(draws, 0.05, dim=0), torch.quantile(draws, 0.95, dim=0)
        outside_90 += int((~((lo < value) & (value < hi))).sum())
        lo, hi = torch.quantile(draws, 0.0005, dim=0), torch.quantile(draws, 0.9995, dim=0)
        assert bool(((lo < value) & (value < hi)).all()), (name, lo, value, hi)
    assert outside_90 <= 2
