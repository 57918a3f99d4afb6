"""Bayesian neural ODE: last-layer posterior against the closed form, the recipe through the CLI, errors."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyro
import pytest
import torch
from figures_check import check_figures
from scipy import integrate

import nde_lab
from nde_lab.dynamics import MLPVectorField
from nde_lab.errors import DataError, RecipeError
from nde_lab.prob import Likelihood, NeuralODEProgram, Prior, SeriesData
from nde_lab.prob.fast import LaplaceStart, Unconstrained, _fd_hessian, init_guide_at
from nde_lab.prob.inference import make_guide
from nde_lab.train.bayes_bnode import BayesNeuralODETask

ROOT = Path(__file__).resolve().parents[1]


def _linear_setup(prior_scale: float = 0.7, noise: float = 0.02):
    """dh/dt = w . phi(t) + b with phi depending on t only (the hidden layer ignores y): y(t) is linear in (w, b)."""
    torch.manual_seed(1)
    vf = MLPVectorField(1, width=5, depth=1, time_input=True).double()
    first = vf.net[0]
    with torch.no_grad():
        first.weight[:, 0] = 0.0  # no dependence on the state
        first.weight[:, 1] = torch.tensor([0.5, 1.0, 1.5, 2.0, 2.5])  # distinct, not mirror-image features
        first.bias.copy_(torch.tensor([-1.0, 0.3, -0.4, 0.8, 0.1]))
    w1, b1 = first.weight[:, 1].detach().numpy(), first.bias.detach().numpy()
    times = 0.15 * np.arange(15)  # on the rk4 grid (step 0.05): torchdiffeq interpolates linearly between steps
    rng = np.random.default_rng(0)
    big_phi = np.stack([[integrate.quad(lambda s, k=k: math.tanh(w1[k] * s + b1[k]), 0.0, t, epsabs=1e-13)[0]
                         for k in range(5)] for t in times])  # (T, 5): integrals of the features
    design_h = np.column_stack([big_phi, times])  # h(t) - h(0) = design_h @ (w, b)
    w_true = rng.normal(0, prior_scale, 6)
    values = 1.0 + design_h @ w_true * 0.8 + noise * rng.normal(size=15)
    values[0] = 1.0
    prog = NeuralODEProgram(vector_field=vf, likelihood=Likelihood(family="Normal", scale="sigma"),
                            noise_scale=noise, prior_scale=prior_scale, step_size=0.05)
    prog.bind(SeriesData(times=times, values=values[:, None], state_names=["x"]))
    s = float(prog._scale[0])  # z = m + s h, and h(0) is the standardised first observation
    design = s * design_h
    precision = design.T @ design / noise**2 + np.eye(6) / prior_scale**2
    cov = np.linalg.inv(precision)
    mean = cov @ design.T @ (values - values[0]) / noise**2
    return prog, mean, cov


def test_last_layer_posterior_matches_bayesian_linear_regression(float64):
    prog, mean, cov = _linear_setup()
    assert prog.parameter_names == ["w_out", "b_out"]
    # the program's log density is the closed form's quadratic: its batched central-difference Hessian is
    # minus the precision, and one Newton step from 0 lands on the posterior mean
    unc = Unconstrained(prog)
    u0 = torch.zeros(6, requires_grad=True)
    (grad,) = torch.autograd.grad(unc.log_density(u0.unsqueeze(0)).sum(), u0)
    hess = _fd_hessian(unc, u0.detach(), 1e-4)
    np.testing.assert_allclose(-hess.numpy(), np.linalg.inv(cov), rtol=1e-4, atol=1e-3)
    u_map = u0.detach() - torch.linalg.solve(hess, grad)
    whiten = np.linalg.inv(np.linalg.cholesky(cov))
    assert np.abs(whiten @ (u_map.numpy() - mean)).max() < 1e-4
    # the data are informative: the posterior is far narrower than the prior in some directions
    assert np.sqrt(np.linalg.eigvalsh(cov)).min() < 0.05 * 0.7
    # SVI as BayesNeuralODETask runs it: guide started at the Laplace fit, then vectorised-particle steps
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    guide = make_guide("AutoMultivariateNormal", prog)
    laplace_cov = torch.linalg.inv(-0.5 * (hess + hess.T))
    init_guide_at(guide, LaplaceStart(u_map=u_map, cov=laplace_cov, log_density=0.0, params={}))
    elbo = pyro.infer.Trace_ELBO(num_particles=64, vectorize_particles=True, max_plate_nesting=0)
    opt = torch.optim.Adam(guide.parameters(), lr=0.002)
    for _ in range(200):  # a biased ELBO gradient would drift ~200 x 0.002 = 0.4 in the guide's parameters
        opt.zero_grad()
        elbo.differentiable_loss(prog.model, guide).backward()
        opt.step()
    q = guide.get_posterior()  # the exact posterior is Gaussian, so the optimal guide is exact
    q_mean, q_cov = q.loc.detach().numpy(), q.covariance_matrix.detach().numpy()
    # SGD noise only: in the exact posterior's whitened coordinates the guide stays N(~0, ~I). Adam moves
    # each raw coordinate by up to lr per step, lr / (narrowest posterior sd) ~ 0.1 whitened units here
    sd_min = np.sqrt(np.linalg.eigvalsh(cov)).min()
    assert np.abs(whiten @ (q_mean - mean)).max() < 3 * 0.002 / sd_min
    eig = np.linalg.eigvalsh(whiten @ q_cov @ whiten.T)
    assert eig.min() > 0.8 and eig.max() < 1.25


def test_batched_field_equals_module(float64):
    torch.manual_seed(0)
    vf = MLPVectorField(2, width=8, depth=2, time_input=True, input_map="cube").double()
    prog = NeuralODEProgram(vector_field=vf, likelihood=Likelihood(family="Normal", scale="sigma"), weights="all",
                            priors={"sigma": Prior("HalfNormal", {"scale": 1.0})})
    assert prog.weight_names == ["w_layer0", "b_layer0", "w_layer1", "b_layer1", "w_out", "b_out"]
    lin = [m for m in vf.net if isinstance(m, torch.nn.Linear)]
    params = {}
    for m, name in zip(lin, ["layer0", "layer1", "out"], strict=True):
        params[f"w_{name}"] = torch.stack([m.weight.detach(), 2 * m.weight.detach()])
        params[f"b_{name}"] = torch.stack([m.bias.detach(), 2 * m.bias.detach()])
    y, t = torch.randn(2, 2), torch.tensor(0.3)
    out = prog.field(params)(t, y)
    torch.testing.assert_close(out[0], vf(t, y[0]))
    for m in lin:
        with torch.no_grad():
            m.weight.mul_(2)
            m.bias.mul_(2)
    torch.testing.assert_close(out[1], vf(t, y[1]))


def test_bnode_errors():
    vf = MLPVectorField(2, width=4, depth=1)
    lik = Likelihood(family="Normal", scale="sigma")
    sigma = {"sigma": Prior("HalfNormal", {"scale": 1.0})}
    with pytest.raises(RecipeError, match="must be an nde_lab.dynamics.MLPVectorField"):
        NeuralODEProgram(vector_field=torch.nn.Linear(2, 2), likelihood=lik, priors=sigma)
    with pytest.raises(RecipeError, match="'last_layer' or 'all'"):
        NeuralODEProgram(vector_field=vf, likelihood=lik, priors=sigma, weights="first")
    with pytest.raises(RecipeError, match="prior_scale and hidden_prior_scale must be positive"):
        NeuralODEProgram(vector_field=vf, likelihood=lik, priors=sigma, prior_scale=0.0)
    with pytest.raises(RecipeError, match="prior_scale and hidden_prior_scale must be positive"):
        NeuralODEProgram(vector_field=vf, likelihood=lik, priors=sigma, hidden_prior_scale=-1.0)
    with pytest.raises(RecipeError, match="noise_scale must be positive"):
        NeuralODEProgram(vector_field=vf, likelihood=lik, noise_scale=-1.0)
    with pytest.raises(RecipeError, match="coordinates must be"):
        NeuralODEProgram(vector_field=vf, likelihood=lik, priors=sigma, coordinates="polar")
    with pytest.raises(RecipeError, match="names a network weight"):
        NeuralODEProgram(vector_field=vf, likelihood=lik, priors={**sigma, "w_out": Prior("Normal", {"loc": 0.0, "scale": 1.0})})
    with pytest.raises(RecipeError, match="needs a prior for 'z0'"):
        NeuralODEProgram(vector_field=vf, likelihood=lik, priors=sigma, initial_state="z0")
    with pytest.raises(RecipeError, match="initial state needs shape"):
        NeuralODEProgram(vector_field=vf, likelihood=lik, priors={**sigma, "z0": Prior("Normal", {"loc": 0.0, "scale": 1.0})},
                         initial_state="z0")
    prog = NeuralODEProgram(vector_field=vf, likelihood=lik, priors=sigma)
    with pytest.raises(RecipeError, match="must be a nde_lab.prob.NeuralODEProgram"):
        BayesNeuralODETask(program=object())
    with pytest.raises(RecipeError, match="pretrain_starts >= 1"):
        BayesNeuralODETask(program=prog, pretrain_starts=0)
    data3 = SeriesData(times=[0.0, 1.0], values=[[1.0, 2.0, 3.0]] * 2, state_names=["a", "b", "c"])
    with pytest.raises(DataError, match="set vector_field.init_args.dim: 3"):
        prog.bind(data3)
    neg = SeriesData(times=[0.0, 1.0], values=[[1.0, -2.0]] * 2, state_names=["a", "b"])
    with pytest.raises(DataError, match="needs positive observations"):
        NeuralODEProgram(vector_field=vf, likelihood=lik, priors=sigma, coordinates="log").bind(neg)
    lognormal = Likelihood(family="LogNormal", scale="sigma")
    with pytest.raises(DataError, match="needs coordinates: log"):
        NeuralODEProgram(vector_field=vf, likelihood=lognormal, priors=sigma).bind(
            SeriesData(times=[0.0, 1.0], values=[[1.0, 2.0]] * 2, state_names=["a", "b"]))
    prog.bind(SeriesData(times=[0.0, 1.0], values=[[1.0, 2.0]] * 2, state_names=["a", "b"]))
    with pytest.raises(DataError, match="increasing and not before t0"):
        prog.predict({"w_out": torch.zeros(2, 4), "b_out": torch.zeros(2)}, torch.tensor([-1.0, 0.5]))


@pytest.mark.slow
def test_bayes_neural_ode_recipe(tmp_path):
    cmd = [sys.executable, "-m", "nde_lab.cli", "fit", "--config", str(ROOT / "recipes" / "bayes_neural_ode.yaml"),
           "--store", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "posterior-predictive band covers" in proc.stderr
    (run_dir,) = (tmp_path / "bayes_neural_ode").iterdir()
    run = nde_lab.open_run(run_dir)
    assert run.tree.attrs["model_family"] == "bayes_neural_ode"
    check_figures("bayes_neural_ode", run)
    post = run.posterior
    assert sorted(post.data_vars) == ["b_out", "sigma", "w_out", "z_init"]
    assert post["w_out"].dims == ("chain", "draw", "w_out_dim_0", "w_out_dim_1")
    assert post["z_init"].dims == ("chain", "draw", "state")
    pp = run.tree["posterior_predictive"].to_dataset()
    assert pp["y"].dims == ("chain", "draw", "time", "state")
    assert "bands" not in pp and pp["time"].attrs["units"] == "years"  # ArviZ group: draws only; time has units
    summ = run.summary
    assert summ["predictive_quantiles"].dims == ("quantile", "time", "state")
    assert bool((summ["predictive_quantiles"].diff("quantile") >= 0).all())  # quantiles ordered
    assert bool(np.isfinite(summ["predictive_mean"]).all())
    assert 0.0 <= summ.attrs["coverage_90"] <= 1.0
    # a reopened run predicts with the restored (MAP) hidden layer: same trajectories as stored at the data times
    pred = run.predict(None, n=30, seed=5)
    stored_mu = pp["mu"].stack(sample=("chain", "draw")).transpose("sample", "time", "state").values
    idx = np.sort(np.random.default_rng(5).choice(stored_mu.shape[0], size=30, replace=False))  # the query's pick
    np.testing.assert_allclose(pred["mu"].transpose("sample", "time", "state").values, stored_mu[idx], rtol=1e-8)
    future = run.predict(np.linspace(0.0, 25.0, 11), n=30)
    assert future["quantiles"].dims == ("quantile", "time", "state") and future.attrs["n_draws"] == 30
