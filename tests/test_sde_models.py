"""SDE components (OU, GBM, user parametric, neural, latent) and the MLE-of-transitions task."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
from scipy import stats

from nde_lab.data.sde_data import NileFlow, SimulatedPaths, load_nile
from nde_lab.dynamics.sde import NeuralSDE
from nde_lab.dynamics.sde_latent import LatentSDEModel
from nde_lab.dynamics.sde_parametric import (
    GeometricBrownianMotion,
    OrnsteinUhlenbeck,
    ParametricSDE,
)
from nde_lab.errors import DataError
from nde_lab.solvers.sde import SDESolverOptions, solve_sde
from nde_lab.train.latent_sde import LatentSDETask
from nde_lab.train.sde_fit import SDEFitTask


class Logistic(ParametricSDE):
    """A user-written parametric SDE (no exact transition density)."""

    noise_type = "diagonal"

    def __init__(self, r: float = 1.0, k: float = 2.0, sigma: float = 0.1) -> None:
        super().__init__(params={"r": r, "k": k, "sigma": sigma}, positive=("r", "k", "sigma"))

    def drift(self, t, y, p):
        return p["r"] * y * (1 - y / p["k"])

    def diffusion(self, t, y, p):
        return p["sigma"] * y


def test_exact_transition_densities_match_closed_forms(float64):
    ou = OrnsteinUhlenbeck(theta=2.0, mu=1.0, sigma=0.5)
    y0, y1, dt = torch.tensor([[0.3], [1.7]]), torch.tensor([[0.8], [0.9]]), 0.4
    a = math.exp(-2.0 * dt)
    sd = math.sqrt(0.25 * (1 - a * a) / 4.0)
    expected = stats.norm(1.0 + (y0.numpy()[:, 0] - 1.0) * a, sd).logpdf(y1.numpy()[:, 0])
    assert np.allclose(ou.transition_log_prob(torch.tensor(0.0), y0, torch.tensor(dt), y1).detach().numpy(), expected)
    gbm = GeometricBrownianMotion(mu=0.3, sigma=0.6)
    s = 0.6 * math.sqrt(dt)
    lognorm = stats.lognorm(s=s, scale=np.exp(np.log([0.3, 1.7]) + (0.3 - 0.18) * dt)).logpdf([0.8, 0.9])
    assert np.allclose(gbm.transition_log_prob(torch.tensor(0.0), y0, torch.tensor(dt), y1).detach().numpy(), lognorm)
    # over a short step the Euler-Maruyama density approaches the exact one
    small = torch.tensor(1e-4)
    near = y0 + 0.005
    em = ParametricSDE.transition_log_prob(ou, torch.tensor(0.0), y0, small, near)
    assert torch.allclose(em, ou.transition_log_prob(torch.tensor(0.0), y0, small, near), rtol=1e-3)


def test_parameters_stay_positive_and_bad_values_are_rejected():
    ou = OrnsteinUhlenbeck(theta=0.1, sigma=0.1)
    with torch.no_grad():
        ou.raw["theta"].sub_(50.0)  # a huge gradient step on the log scale
    assert bool((ou.constrained()["theta"] > 0).all())
    with pytest.raises(ValueError, match=r"'sigma' must be positive, got \[-1\.0\]"):
        OrnsteinUhlenbeck(sigma=-1.0)
    with pytest.raises(ValueError, match="unknown parameter names \\['nu'\\]"):
        OrnsteinUhlenbeck(learnable=["nu"])
    fixed = OrnsteinUhlenbeck(learnable=["mu"])
    assert fixed.learnable_names() == ["mu"] and len(list(fixed.parameters())) == 1


def test_user_parametric_and_neural_sdes_solve_and_get_gradients_everywhere():
    t = torch.linspace(0, 1, 5)
    for sde, y0 in ((Logistic(), torch.full((16, 1), 0.5)), (NeuralSDE(2, width=8), torch.zeros(16, 2))):
        sol = solve_sde(sde, y0, t, options=SDESolverOptions(dt=0.05), seed=0)
        sol.y[-1].sum().backward()
        assert sol.y.shape == (5, 16, y0.shape[1])
        assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in sde.parameters()), type(sde).__name__
    with pytest.raises(ValueError, match="diffusion_init > diffusion_floor"):
        NeuralSDE(2, diffusion_init=0.0)


def test_ou_mle_recovers_parameters_within_four_standard_errors(float64):
    """100 paths x 50 transitions (spacing 0.2) of OU(theta=1, mu=2, sigma=0.5) from x0=0.

    Tolerances: 4 standard errors from the inverse observed Fisher information. The asymptotic
    standard errors of a stationary AR(1) with a = exp(-theta dt) give sanity bounds: SE(theta) ~
    sqrt((1-a^2)/n)/(a dt) = 0.050, SE(mu) ~ sigma sqrt((1+a)/(2 theta n (1-a))) = 0.016,
    SE(sigma) ~ sigma/sqrt(2n) = 0.005 (n = 5000); the transient from x0 = 0 adds information about
    theta, so the reported SE(theta) is somewhat smaller (0.031).
    """
    truth = {"theta": 1.0, "mu": 2.0, "sigma": 0.5}
    dm = SimulatedPaths(OrnsteinUhlenbeck(**truth), n_paths=100, n_times=51, t_end=10.0, x0=0.0,
                        val_fraction=0.0, batch_size=1000, seed=0)
    task = SDEFitTask(OrnsteinUhlenbeck(theta=0.3, mu=0.0, sigma=1.0), n_samples=50)
    L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(task, dm)
    with torch.no_grad():
        out = task.run_outputs(dm)
    params = out["parameters"]
    analytic = {"theta": 0.050, "mu": 0.016, "sigma": 0.0050}
    for name, value in truth.items():
        est = params["value"].sel(parameter=name).values.item()
        se = params["std_error"].sel(parameter=name).values.item()
        assert abs(est - value) < 4 * se, (name, est, se)
        assert 0.4 * analytic[name] < se < 2.0 * analytic[name], (name, se)
    assert out["trajectories"]["y"].dims == ("sample", "time", "state")
    assert list(out["summary"]["quantile"].values) == [0.05, 0.25, 0.5, 0.75, 0.95]
    assert int(out["solver_stats"]["masked_paths"]) == 0


def test_euler_transition_fit_of_a_user_sde_and_data_errors():
    dm = SimulatedPaths(Logistic(r=1.0, k=2.0, sigma=0.1), n_paths=60, n_times=41, t_end=4.0, x0=0.2,
                        val_fraction=0.0, batch_size=1000, seed=1)
    task = SDEFitTask(Logistic(r=0.5, k=1.0, sigma=0.3), transition="auto")
    assert not task.exact
    L.Trainer(max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(task, dm)
    p = task.sde.constrained()
    assert abs(float(p["k"]) - 2.0) < 0.15 and abs(float(p["r"]) - 1.0) < 0.2 and abs(float(p["sigma"]) - 0.1) < 0.01
    with pytest.raises(ValueError, match="has no exact transition density"):
        SDEFitTask(Logistic(), transition="exact")
    with pytest.raises(DataError, match=r"data has 2 state columns but model.sde.state_dim is 1"):
        task.log_likelihood(torch.linspace(0, 1, 3), torch.ones(4, 3, 2))
    with pytest.raises(DataError, match="n_times >= 2"):
        SimulatedPaths(OrnsteinUhlenbeck(), n_times=1)


def test_nile_series_is_the_classic_one():
    years, flow = load_nile()
    assert years[0] == 1871 and years[-1] == 1970 and flow.size == 100
    assert flow.mean() == pytest.approx(919.35) and flow.std(ddof=1) == pytest.approx(169.2275, abs=1e-3)
    assert flow.min() == 456 and years[flow.argmin()] == 1913
    dm = NileFlow(holdout_fraction=0.1)
    assert dm.values.shape == (1, 100, 1) and (~dm.observed).sum() == 10


def test_latent_sde_elbo_improves_and_outputs_are_finite():
    dm = SimulatedPaths(GeometricBrownianMotion(mu=0.5, sigma=0.4), n_paths=64, n_times=20, t_end=2.0, x0=1.0,
                        irregular=True, obs_noise=0.05, val_fraction=0.25, holdout_fraction=0.2, batch_size=16, seed=0)
    assert not np.allclose(np.diff(dm.times), np.diff(dm.times)[0])  # irregular
    task = LatentSDETask(LatentSDEModel(1, latent_dim=2, context_dim=8, hidden=16), kl_anneal_steps=20, n_samples=20)
    elbos = []

    class Record(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            elbos.append(float(trainer.callback_metrics["train_elbo"]))

    L.seed_everything(0)
    L.Trainer(max_epochs=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, callbacks=[Record()]).fit(task, dm)
    assert np.mean(elbos[-2:]) > elbos[0] + 100, elbos
    task.eval()
    with torch.no_grad():
        out = task.run_outputs(dm)
    pp = out["posterior_predictive"]["y"]
    assert pp.dims == ("sample", "path", "time", "state") and pp.shape[:2] == (20, 16)
    assert 0.0 <= float(out["summary"]["coverage_90"]) <= 1.0 and int(out["summary"]["n_heldout"]) == 16 * 4
    for name, ds in out.items():
        for var in ds.data_vars.values():
            assert np.isfinite(var.values).all(), name


def test_latent_sde_path_kl_is_the_girsanov_integral_on_the_euler_grid(float64):
    """The augmented coordinate equals sum_k 0.5 |(f - h) / g|^2 (t_k, z_k) dt over the Euler steps (summed over state)."""
    torch.manual_seed(0)
    model = LatentSDEModel(1, latent_dim=3, context_dim=4, hidden=8)
    t_obs = torch.tensor([0.0, 0.13, 0.2, 0.5])
    ctx, qz0 = model.encode(t_obs, torch.randn(5, 4, 1))
    z0 = qz0.rsample()
    grid = torch.linspace(0.0, 0.5, 11)  # the solver's own grid (dt = 0.05), so outputs are the Euler nodes
    sol = solve_sde(model.posterior_sde(t_obs, ctx), torch.cat([z0, torch.zeros(5, 1)], 1), grid,
                    options=SDESolverOptions(method="euler", dt=0.05), seed=1)
    z = sol.y[..., :-1]
    by_hand = torch.zeros(5)
    for k in range(10):
        u = (model.posterior_drift(grid[k], z[k], t_obs, ctx) - model.prior_drift(z[k])) / model.diffusion(z[k])
        by_hand = by_hand + 0.5 * (u**2).sum(1) * 0.05
    assert torch.allclose(sol.y[-1, :, -1], by_hand, rtol=1e-10)
    # the vectorised diagonal diffusion is one small MLP per coordinate: coordinate i depends on z_i only
    zz = torch.randn(7, 3, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda v: model.diffusion(v).sum(0), zz)  # (3, 7, 3)
    off = jac.sum(1) * (1 - torch.eye(3))
    assert bool((off == 0).all()) and bool(((model.diffusion(zz) > 0) & (model.diffusion(zz) < 1)).all())
