"""nde_lab.prob: declarative priors and their errors, ArviZ-identical diagnostics, conjugate posteriors."""

from __future__ import annotations

import math

import arviz as az
import numpy as np
import pyro
import pytest
import torch

from nde_lab.errors import DataError, RecipeError
from nde_lab.prob import (
    Likelihood,
    LinearRegressionProgram,
    ODEProgram,
    Prior,
    SeriesData,
    TabularData,
    ess_bulk,
    make_distribution,
    psis,
    rhat,
)
from nde_lab.prob.inference import make_guide, run_nuts
from nde_lab.prob.posterior import draws_dataset, summary_dataset


# ---- declarative priors ----------------------------------------------------------------------------
def test_truncated_normal_density_and_sampling(float64):
    d = make_distribution("Normal", {"loc": 0.05, "scale": 0.05}, low=0.0)
    x = torch.linspace(1e-4, 0.5, 20001)
    dens = d.log_prob(x).exp()
    assert float(torch.trapezoid(dens, x)) == pytest.approx(1.0, abs=2e-3)  # renormalised on (0, inf)
    assert float(d.log_prob(torch.tensor(-0.01))) == -math.inf
    s = d.sample((20000,))
    assert bool((s >= 0).all())
    se = float(s.std()) / math.sqrt(s.numel())
    assert abs(float(s.mean()) - float(d.mean)) < 4 * se


def test_prior_shape_and_event(float64):
    d = Prior(dist="LogNormal", args={"loc": math.log(10), "scale": 1.0}, shape=[2]).build()
    assert tuple(d.event_shape) == (2,) and d.sample().shape == (2,)


@pytest.mark.parametrize(("name", "args", "low", "high", "scipy_dist"), [
    ("Gamma", {"concentration": 2.0, "rate": 1.0}, 0.5, 3.0, ("gamma", (2.0,), {"scale": 1.0})),
    ("Beta", {"concentration1": 2.0, "concentration0": 2.0}, 0.2, 0.6, ("beta", (2.0, 2.0), {})),
    ("StudentT", {"df": 3.0}, 0.0, None, ("t", (3.0,), {})),
    ("InverseGamma", {"concentration": 2.0, "rate": 1.0}, None, 2.0, ("invgamma", (2.0,), {"scale": 1.0})),
])
def test_truncating_a_family_without_a_torch_cdf(float64, name, args, low, high, scipy_dist):
    """Truncated anything: the mass is integrated once (quad), sampling is by rejection; density and
    mean against scipy's truncated closed forms."""
    import scipy.stats as st
    from scipy.integrate import quad

    ref = getattr(st, scipy_dist[0])(*scipy_dist[1], **scipy_dist[2])
    lo, hi = (-math.inf if low is None else low), (math.inf if high is None else high)
    mass = ref.cdf(hi) - ref.cdf(lo)
    d = make_distribution(name, args, low=low, high=high)
    x = 0.45 if name == "Beta" else 1.0
    assert float(d.log_prob(torch.tensor(x))) == pytest.approx(ref.logpdf(x) - math.log(mass), abs=1e-8)
    assert float(d.log_prob(torch.tensor(hi + 1.0 if high else lo - 1.0))) == -math.inf
    draws = d.sample((20_000,))
    assert float(draws.min()) >= lo and float(draws.max()) <= hi
    mean = quad(lambda z: z * ref.pdf(z), max(lo, ref.support()[0]), hi)[0] / mass
    assert abs(float(draws.mean()) - mean) < 4 * float(draws.std()) / math.sqrt(len(draws))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"name": "Normall", "args": {"loc": 0.0, "scale": 1.0}}, "Did you mean 'Normal'"),
        ({"name": "Normal", "args": {"loc": 0.0, "scale": -1.0}}, "invalid arguments"),
        ({"name": "Normal", "args": {"mu": 0.0, "scale": 1.0}}, "has no argument(s) ['mu']"),
        ({"name": "Normal", "args": {"loc": "a", "scale": 1.0}}, "not a number"),
        ({"name": "Gamma", "args": {"concentration": 2.0, "rate": 1.0}, "low": 80.0}, "keeps only 1.46e-33 of Gamma's mass"),
        ({"name": "Poisson", "args": {"rate": 2.0}, "low": 1.0}, "needs a continuous family"),
        ({"name": "Normal", "args": {"loc": 0.0, "scale": 1.0}, "low": 1.0, "high": 0.0}, "low < high"),
        ({"name": "Normal", "args": {"loc": 0.0, "scale": 1.0}, "shape": [0]}, "positive integers"),
    ],
)
def test_prior_errors(kwargs, needle):
    name, args = kwargs.pop("name"), kwargs.pop("args")
    with pytest.raises(RecipeError) as err:
        make_distribution(name, args, **kwargs)
    assert needle in str(err.value)


def _lv_priors():
    return {
        "alpha": Prior("Normal", {"loc": 1.0, "scale": 0.5}, low=0.0),
        "beta": Prior("Normal", {"loc": 0.05, "scale": 0.05}, low=0.0),
        "gamma": Prior("Normal", {"loc": 1.0, "scale": 0.5}, low=0.0),
        "delta": Prior("Normal", {"loc": 0.05, "scale": 0.05}, low=0.0),
        "z_init": Prior("LogNormal", {"loc": math.log(10), "scale": 1.0}, shape=[2]),
        "sigma": Prior("LogNormal", {"loc": -1.0, "scale": 1.0}, shape=[2]),
    }


def test_program_errors(float64):
    with pytest.raises(RecipeError, match="needs a prior for 'gamma'"):
        ODEProgram(priors={k: v for k, v in _lv_priors().items() if k != "gamma"},
                   likelihood=Likelihood(family="LogNormal", scale="sigma"))
    with pytest.raises(RecipeError, match="needs likelihood.scale"):
        Likelihood(family="Normal")
    with pytest.raises(RecipeError, match="must be one of"):
        Likelihood(family="Gumbel", scale="s")
    prog = ODEProgram(priors=_lv_priors(), likelihood=Likelihood(family="LogNormal", scale="sigma"))
    with pytest.raises(DataError, match=r"observes 2 states.*3 columns"):
        prog.bind(SeriesData(times=np.arange(5.0), values=np.ones((5, 3)), state_names=["a", "b", "c"]))
    with pytest.raises(DataError, match="NaN"):
        SeriesData(times=np.arange(5.0), values=np.array([[1.0, np.nan]] * 5), state_names=["a", "b"])
    with pytest.raises(DataError, match="positive observations"):
        prog.bind(SeriesData(times=np.arange(3.0), values=-np.ones((3, 2)), state_names=["a", "b"]))
    reg = LinearRegressionProgram(priors={"a": Prior("Normal", {"loc": 0.0, "scale": 1.0}),
                                          "b": Prior("Normal", {"loc": 0.0, "scale": 1.0})},
                                  coefficients=["b"], noise_scale=1.0)
    with pytest.raises(DataError, match="2 feature columns"):
        reg.bind(TabularData(x=np.ones((4, 2)), y=np.ones(4), feature_names=["u", "v"]))


# ---- diagnostics: identical to ArviZ -----------------------------------------------------------------
def _ar1(n_chain: int, n_draw: int, phi: float, rng) -> np.ndarray:
    x = np.zeros((n_chain, n_draw))
    for t in range(1, n_draw):
        x[:, t] = phi * x[:, t - 1] + rng.normal(size=n_chain)
    return x + rng.normal(scale=0.3, size=(n_chain, 1))  # chains with slightly different means


@pytest.mark.parametrize(("n_draw", "phi"), [(500, 0.0), (301, 0.8), (200, 0.97)])
def test_rhat_and_ess_match_arviz(n_draw, phi):
    x = _ar1(4, n_draw, phi, np.random.default_rng(1))
    assert rhat(x) == pytest.approx(float(az.rhat(x, method="rank")), rel=1e-10)
    assert ess_bulk(x) == pytest.approx(float(az.ess(x, method="bulk")), rel=1e-10)


def test_psis_matches_arviz():
    rng = np.random.default_rng(2)
    lw = rng.standard_t(df=3, size=4000)  # heavy tail: k clearly > 0
    ours, k = psis(lw)
    theirs, k_az = az.psislw(lw.copy())
    assert k == pytest.approx(float(k_az), rel=1e-10)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    _, k_light = psis(rng.normal(scale=0.1, size=4000))
    assert k_light < 0.5 < k


# ---- conjugate Gaussian linear regression with known noise -------------------------------------------
def _conjugate_setup():
    rng = np.random.default_rng(3)
    n, noise, tau = 40, 0.5, 2.0
    x = rng.normal(size=(n, 2))
    y = 1.0 + x @ np.array([0.7, -1.2]) + noise * rng.normal(size=n)
    prog = LinearRegressionProgram(
        priors={name: Prior("Normal", {"loc": 0.0, "scale": tau}) for name in ("a", "b1", "b2")},
        coefficients=["b1", "b2"], noise_scale=noise,
    )
    prog.bind(TabularData(x=x, y=y, feature_names=["x1", "x2"]))
    design = np.column_stack([np.ones(n), x])
    precision = design.T @ design / noise**2 + np.eye(3) / tau**2
    cov = np.linalg.inv(precision)
    mean = cov @ design.T @ y / noise**2
    return prog, mean, cov


@pytest.mark.slow
def test_conjugate_nuts(float64):
    prog, mean, cov = _conjugate_setup()
    res = run_nuts(prog, num_chains=2, warmup=200, draws=400, seed=0, progress=False)
    post = draws_dataset(prog, res.draws)
    summ = summary_dataset(post)
    draws = np.stack([post[k].values.ravel() for k in ("a", "b1", "b2")], axis=1)
    sd = np.sqrt(np.diag(cov))
    ess = summ["ess_bulk"].values
    assert (summ["r_hat"].values < 1.02).all()
    # mean: MC standard error sd / sqrt(ESS); sd: relative MC error ~ 1 / sqrt(2 ESS)
    assert (np.abs(draws.mean(0) - mean) < 4.5 * sd / np.sqrt(ess)).all()
    assert (np.abs(draws.std(0, ddof=1) / sd - 1) < 4.5 / np.sqrt(2 * ess)).all()
    corr = np.corrcoef(draws.T)
    true_corr = cov / np.outer(sd, sd)
    assert np.abs(corr - true_corr).max() < 4.5 / np.sqrt(ess.min())


def test_conjugate_auto_multivariate_normal(float64):
    prog, mean, cov = _conjugate_setup()
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    guide = make_guide("AutoMultivariateNormal", prog)
    guide()
    elbo = pyro.infer.Trace_ELBO(num_particles=64, vectorize_particles=True, max_plate_nesting=0)
    opt = torch.optim.Adam(guide.parameters(), lr=0.03)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=800, eta_min=1e-4)
    for _ in range(800):
        opt.zero_grad()
        elbo.differentiable_loss(prog.model, guide).backward()
        opt.step()
        sched.step()
    q = guide.get_posterior()  # the posterior is Gaussian: the optimal guide is exact
    sd = np.sqrt(np.diag(cov))
    q_mean, q_cov = q.loc.detach().numpy(), q.covariance_matrix.detach().numpy()
    # stochastic-gradient noise at the final learning rate: allow 0.05 posterior sd, 5% on the sds
    assert np.abs(q_mean - mean).max() < 0.05 * sd.min()
    np.testing.assert_allclose(np.sqrt(np.diag(q_cov)), sd, rtol=0.05)
    np.testing.assert_allclose(q_cov / np.outer(sd, sd), cov / np.outer(sd, sd), atol=0.05)
