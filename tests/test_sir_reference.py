"""The boarding-school outbreak's long NUTS reference (benchmarks/sir_reference.py) and the rule that
compares a posterior with it (tests/reference_check.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import torch
from scipy import stats
from torchdiffeq import odeint

import nde_lab
from nde_lab.data import load_boarding_school
from nde_lab.prob import ODEProgram
from nde_lab.prob.diagnostics import resampled_ess
from nde_lab.prob.fast import Unconstrained

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from figures_check import check_figures  # noqa: E402
from reference_check import compare_to_reference, recipe_program  # noqa: E402

from benchmarks.sir_reference import (  # noqa: E402
    DERIVED,
    DRAWS,
    LABELS,
    OUT,
    OutbreakPosterior,
    derived,
    summarise,
)

REFERENCE = json.loads(OUT.read_text())
RECIPE = ROOT / "recipes" / "sir_boarding_school.yaml"
IN_BED = [3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4]


def test_reference_is_long_converged_and_matches_the_stan_case_study():
    assert REFERENCE["chains"] >= 4 and REFERENCE["draws"] >= 5000 and sum(REFERENCE["divergences"]) == 0
    rows = {**REFERENCE["parameters"], **REFERENCE["derived"]}
    assert sorted(rows) == sorted(LABELS + DERIVED)
    for name, row in rows.items():
        assert row["r_hat"] < 1.01, name
        assert min(row["ess_bulk"], row["ess_tail"]) > 5000, name
        assert row["mcse_mean"] < 0.02 * row["sd"] and row["mcse_q05"] < 0.05 * row["sd"], name
        assert row["q05"] < row["q50"] < row["q95"], name
    # Grinsztajn et al. (2021), Stan case study: posterior means beta 1.73, gamma 0.54, R0 3.2, recovery 1.85 d
    mean = {name: row["mean"] for name, row in rows.items()}
    assert abs(mean["beta"] - 1.73) < 0.02 and abs(mean["gamma"] - 0.54) < 0.02
    assert abs(mean["R0"] - 3.2) < 0.1 and abs(mean["recovery_time"] - 1.85) < 0.05


def _points(n: int, scale: float) -> np.ndarray:
    """n unconstrained points around the reference posterior (scale x its sd in log coordinates)."""
    rng = np.random.default_rng(2)
    rows = [REFERENCE["parameters"][k] for k in LABELS]
    centre = np.log([r["mean"] for r in rows])
    sd = np.array([r["sd"] / r["mean"] for r in rows])
    return centre + scale * sd * rng.normal(size=(n, len(LABELS)))


def _independent_log_density(u: torch.Tensor) -> torch.Tensor:
    """The same posterior from pyro.distributions, scipy.stats and torchdiffeq (natural S, I, R; dopri5)."""
    import pyro.distributions as dist
    from torch.distributions import biject_to, constraints

    to_positive = biject_to(constraints.positive)
    theta = to_positive(u)
    beta, gamma, phi = theta
    lp = to_positive.log_abs_det_jacobian(u, theta).sum()
    # truncated normals: scipy's normalised value at theta, with torch's Normal for the gradient
    # (the truncation constant does not depend on theta)
    for x, (m, s) in ((beta, (2.0, 1.0)), (gamma, (0.4, 0.5))):
        value = stats.truncnorm.logpdf(x.item(), -m / s, np.inf, loc=m, scale=s)
        shape = dist.Normal(m, s).log_prob(x)
        lp = lp + shape + (value - shape.item())
    lp = lp + dist.InverseGamma(torch.tensor(1.0), torch.tensor(5.0)).log_prob(phi)

    def sir(t, z):
        s, i, _ = z
        infection = beta * s * i / 763.0
        return torch.stack([-infection, infection - gamma * i, gamma * i])

    grid = torch.arange(15, dtype=torch.float64)
    z = odeint(sir, torch.tensor([762.0, 1.0, 0.0]), grid, rtol=1e-9, atol=1e-9, method="dopri5")
    i = z[1:, 1]
    y = torch.tensor(IN_BED, dtype=torch.float64)
    return lp + dist.NegativeBinomial(total_count=phi, logits=i.log() - phi.log()).log_prob(y).sum()


def test_reference_density_agrees_with_pyro_scipy_and_torchdiffeq(float64):
    """The numpy/LSODA-sensitivity density = an independent pyro/scipy/torchdiffeq evaluation, value and
    gradient, in the bulk and 4 sds out."""
    ref = OutbreakPosterior.boarding_school()
    for u in np.concatenate([_points(3, 1.0), _points(2, 4.0)]):
        lp, grad = ref.log_density(u)
        ut = torch.as_tensor(u).requires_grad_(True)
        lp_t = _independent_log_density(ut)
        (grad_t,) = torch.autograd.grad(lp_t, ut)
        assert abs(lp - lp_t.item()) < 1e-6, (u, lp, lp_t.item())
        np.testing.assert_allclose(grad, grad_t.numpy(), rtol=1e-6, atol=1e-6)


def test_labs_sir_field_gives_the_reference_trajectory(float64):
    """nde_lab.dynamics.SIR (with N as a constant) integrates to the reference's I(t) at the posterior mean."""
    from nde_lab.dynamics import SIR

    beta, gamma = (REFERENCE["parameters"][k]["mean"] for k in ("beta", "gamma"))
    field = SIR(beta, gamma, constants={"N": 763.0})
    z = odeint(field, torch.tensor([762.0, 1.0, 0.0]), torch.arange(15, dtype=torch.float64), rtol=1e-11, atol=1e-11)
    s_ref, log_i_ref, _ = OutbreakPosterior.boarding_school().solve(beta, gamma)
    np.testing.assert_allclose(z[1:, 1].numpy(), np.exp(log_i_ref), rtol=1e-7)
    np.testing.assert_allclose(z[1:, 0].numpy(), s_ref, rtol=1e-7)
    np.testing.assert_allclose(z.sum(-1).numpy(), 763.0, rtol=1e-10)


def _lab_program(**solver) -> ODEProgram:
    """The recipe's program with the solver options replaced by `solver`, bound to its data."""
    s = load_boarding_school()
    return recipe_program(RECIPE, s.times, s.values, list(s.state_names), **solver)


def test_recipe_density_equals_the_reference(float64):
    """The recipe's ODEProgram on its unconstrained coordinates = the independent reference density (value and
    gradient, dopri5 at tight tolerances); the recipe's rk4 (step 0.1) moves log p by < 1e-3 there."""
    ref = OutbreakPosterior.boarding_school()
    u = np.concatenate([_points(4, 1.0), _points(2, 4.0)])
    tight = Unconstrained(_lab_program(method="dopri5", step_size=None, rtol=1e-10, atol=1e-10))
    order = [LABELS.index(n) for n in tight.names]  # the lab's coordinate order, e.g. (beta, gamma, phi)
    assert sorted(tight.names) == sorted(LABELS)
    ours = np.array([ref.log_density(x)[0] for x in u])
    ours_grad = np.stack([ref.log_density(x)[1][order] for x in u])
    ut = torch.as_tensor(u[:, order]).requires_grad_(True)
    lab = tight.log_density(ut)
    (lab_grad,) = torch.autograd.grad(lab.sum(), ut)
    np.testing.assert_allclose(lab.detach().numpy(), ours, rtol=0, atol=1e-6)
    np.testing.assert_allclose(lab_grad.numpy(), ours_grad, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        rk4 = Unconstrained(_lab_program()).log_density(torch.as_tensor(u[:, order])).numpy()
    assert np.abs(rk4 - ours).max() < 1e-3


@pytest.mark.slow
def test_outbreak_recipe_matches_the_long_nuts_reference(tmp_path):
    """recipes/sir_boarding_school.yaml (fast posterior) end to end: mean, sd, 5% and 95% quantile of beta,
    gamma, phi, R0 and the recovery time within 4 combined Monte Carlo errors of the reference."""
    cmd = [sys.executable, "-m", "nde_lab", "fit", "--config", str(RECIPE), "--store", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "sir_boarding_school").iterdir()
    run = nde_lab.open_run(run_dir)
    post = run.posterior
    attrs = dict(post.attrs)
    assert attrs["pareto_k"] < attrs["pareto_k_threshold"] and attrs["tail_check"] == "passed"
    theta = np.stack([post[k].transpose("chain", "draw").values for k in LABELS], axis=-1)
    ess = resampled_ess(attrs["ess_importance"], post.sizes["chain"] * post.sizes["draw"])
    assert compare_to_reference(_draws(theta), ess, OUT) == []
    check_figures("sir_boarding_school", run)


def _draws(theta: np.ndarray) -> dict[str, np.ndarray]:
    return {**{k: theta[..., i] for i, k in enumerate(LABELS)}, **derived(theta)}


def _ess(draws: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: float(min(az.ess(x, method="bulk"), az.ess(x, method="tail"))) for k, x in draws.items()}


@pytest.fixture(scope="module")
def halves() -> tuple[dict, dict, dict]:
    """The stored reference draws split by chains: (reference record from chains 0-1, draws of 2-3, their ESS)."""
    theta = np.load(DRAWS)["theta"].astype(np.float64)
    assert theta.shape == (REFERENCE["chains"], REFERENCE["draws"], len(LABELS))
    params, extra = summarise(theta[:2])
    other = _draws(theta[2:])
    return {"parameters": params, "derived": extra}, other, _ess(other)


def test_split_halves_of_the_reference_agree(halves):
    record, draws, ess = halves
    assert compare_to_reference(draws, ess, record) == []
    # the stored record itself summarises these draws (float32 storage aside)
    full = np.load(DRAWS)["theta"].astype(np.float64)
    for i, k in enumerate(LABELS):
        assert abs(full[..., i].mean() - REFERENCE["parameters"][k]["mean"]) < 1e-5 * REFERENCE["parameters"][k]["sd"]


def test_shifted_or_widened_draws_fail_the_comparison(halves):
    record, draws, ess = halves
    sd = {k: record["parameters"][k]["sd"] for k in LABELS}
    shifted = dict(draws, beta=draws["beta"] + 0.15 * sd["beta"])
    failures = compare_to_reference(shifted, ess, record)
    assert any(f.startswith("beta mean") for f in failures) and any(f.startswith("beta q05") for f in failures)
    assert not any(f.startswith(("gamma", "phi")) for f in failures)  # only what moved is named
    g = draws["gamma"]
    wide = dict(draws, gamma=g.mean() + 1.15 * (g - g.mean()))  # sd tolerance here ~7% (ESS ~5500 each)
    assert any(f.startswith("gamma sd") for f in compare_to_reference(wide, ess, record))
    # the tolerance is Monte Carlo error: with 30 effective draws the same shift is within it
    assert compare_to_reference(shifted, {k: 30.0 for k in ess}, record) == []
    # a missing parameter is a failure, not a silent pass
    assert compare_to_reference({k: v for k, v in draws.items() if k != "phi"}, ess, record) == [
        "phi: no draws given (the reference has parameters ['beta', 'gamma', 'phi'])."]
