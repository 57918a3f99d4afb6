"""The boarding-school outbreak's long NUTS reference (benchmarks/sir_reference.py) and the rule that
compares a posterior with it (tests/reference_check.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import torch
from scipy import stats
from torchdiffeq import odeint

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from reference_check import compare_to_reference  # noqa: E402

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
