"""FFJORD CNF: closed-form log-density on a linear field, exact trace vs Hutchinson, adjoint, regularisers, errors."""

from __future__ import annotations

import math

import pytest
import torch

from nde_lab.dynamics import LinearVectorField, MLPVectorField
from nde_lab.errors import DataError, RecipeError
from nde_lab.flows import CNF
from nde_lab.solvers import ODESolverOptions

A = [[-0.3, 0.8, 0.1], [-0.5, 0.2, 0.0], [0.2, -0.1, 0.4]]
T_END = 1.3
TIGHT = ODESolverOptions(method="dopri5", rtol=1e-10, atol=1e-10)


def _closed_form_log_prob(x: torch.Tensor) -> torch.Tensor:
    """dz/dt = A z, z(0) ~ N(0, I), x = z(T): log p(x) = log N(e^{-AT} x) - T tr A."""
    at = torch.tensor(A) * T_END
    z0 = x @ torch.linalg.matrix_exp(-at).T
    return -0.5 * (z0**2).sum(-1) - 0.5 * x.shape[-1] * math.log(2 * math.pi) - torch.trace(at)


@pytest.mark.parametrize("adjoint", [False, True])
def test_linear_field_matches_change_of_variables(float64, adjoint: bool) -> None:
    field = LinearVectorField(3, matrix=A)
    cnf = CNF(field, end_time=T_END, trace="exact",
              solver=ODESolverOptions(method="dopri5", rtol=1e-10, atol=1e-10, adjoint=adjoint))
    x = 2 * torch.randn(7, 3)
    torch.testing.assert_close(cnf.log_prob(x), _closed_form_log_prob(x), atol=1e-7, rtol=0)
    assert cnf.last_stats.nfe > 0 and cnf.last_stats.status == "success"
    # sampling pushes z(0) forward by e^{AT}
    gen = torch.Generator().manual_seed(0)
    draws = cnf.sample(5, generator=gen)
    z0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(draws, z0 @ torch.linalg.matrix_exp(torch.tensor(A) * T_END).T, atol=1e-7, rtol=0)


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_agrees_with_exact_trace_in_expectation(float64, noise: str) -> None:
    torch.manual_seed(1)
    field = MLPVectorField(3, width=16, depth=2, time_input=True, final_scale=1.0)
    x = torch.randn(4, 3)
    exact = CNF(field, trace="exact", solver=ODESolverOptions(rtol=1e-8, atol=1e-8)).log_prob(x).detach()
    reps = 1500
    hutch = CNF(field, trace="hutchinson", noise=noise, solver=ODESolverOptions(rtol=1e-8, atol=1e-8))
    with torch.no_grad():
        est = hutch.log_prob_and_regularisers(x.repeat(reps, 1), generator=torch.Generator().manual_seed(2))[0]
    est = est.reshape(reps, 4)
    mean, se = est.mean(0), est.std(0) / math.sqrt(reps)
    assert (se > 0).all()  # the estimator is genuinely stochastic
    z = (mean - exact) / se
    assert z.abs().max() < 4.0, f"Hutchinson mean off by {z.tolist()} standard errors"


def test_auto_trace_picks_exact_in_low_and_hutchinson_in_high_dimension() -> None:
    low = CNF(MLPVectorField(2, time_input=True), trace="auto", exact_max_dim=4)
    high = CNF(MLPVectorField(6, time_input=True), trace="auto", exact_max_dim=4)
    assert low.exact_trace and not high.exact_trace
    x = torch.randn(3, 6)
    a = high.log_prob_and_regularisers(x, generator=torch.Generator().manual_seed(0))[0]
    b = high.log_prob_and_regularisers(x, generator=torch.Generator().manual_seed(1))[0]
    assert not torch.allclose(a, b)  # stochastic (Hutchinson) by the automatic rule


def test_adjoint_gradients_match_direct_backprop(float64) -> None:
    torch.manual_seed(3)
    field = MLPVectorField(2, width=8, depth=2, time_input=True, final_scale=1.0)
    x = torch.randn(16, 2)
    grads = []
    for adjoint in (False, True):
        cnf = CNF(field, trace="exact", kinetic_energy=0.1, jacobian_frobenius=0.1,
                  solver=ODESolverOptions(rtol=1e-9, atol=1e-9, adjoint=adjoint))
        field.zero_grad()
        torch.manual_seed(7)  # same Hutchinson probe for the Frobenius regulariser
        loss, logs = cnf.loss(x)
        loss.backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in field.parameters()]))
        assert set(logs) == {"nll", "nfe", "kinetic_energy", "jacobian_frobenius"}
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-5)


def test_regularisers_match_closed_forms_on_a_linear_field(float64) -> None:
    field = LinearVectorField(3, matrix=A)
    cnf = CNF(field, end_time=T_END, trace="exact", noise="rademacher", solver=TIGHT)
    x = torch.randn(2000, 3)
    with torch.no_grad():
        _, regs = cnf.log_prob_and_regularisers(x, regularise=True, generator=torch.Generator().manual_seed(0))
    # kinetic energy: ∫_0^T ‖A z(t)‖² dt with z(t) = e^{A(t - T)} x, by a fine trapezoid rule
    a = torch.tensor(A)
    ts = torch.linspace(0, T_END, 2001)
    speeds = torch.stack([((x[:10] @ torch.linalg.matrix_exp(a * (t - T_END)).T) @ a.T).pow(2).sum(-1) for t in ts])
    kinetic = torch.trapezoid(speeds, ts, dim=0)
    torch.testing.assert_close(regs["kinetic"][:10], kinetic, rtol=1e-5, atol=0)
    # Jacobian Frobenius: E ‖εᵀA‖² = ‖A‖_F² for Rademacher ε, times T
    frob = regs["jacobian"]
    se = frob.std() / math.sqrt(len(frob))
    assert abs(float(frob.mean()) - T_END * float((a**2).sum())) < 4 * float(se)


def test_cnf_density_integrates_to_one_on_a_grid(float64) -> None:
    torch.manual_seed(5)
    field = MLPVectorField(2, width=16, depth=2, time_input=True, final_scale=1.0)
    cnf = CNF(field, solver=ODESolverOptions(rtol=1e-6, atol=1e-6))
    axis = torch.linspace(-7, 7, 141)
    gx, gy = torch.meshgrid(axis, axis, indexing="ij")
    with torch.no_grad():
        lp = cnf.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], -1))
    mass = float(lp.exp().sum() * (axis[1] - axis[0]) ** 2)
    assert abs(mass - 1) < 0.01


def test_cnf_errors_are_named() -> None:
    cnf = CNF(MLPVectorField(2, time_input=True))
    with pytest.raises(DataError, match=r"data has 3 coordinates per point but CNF was built for dim=2"):
        cnf.log_prob(torch.randn(4, 3))
    with pytest.raises(DataError, match=r"unconditional"):
        cnf.log_prob(torch.randn(4, 2), torch.randn(4, 1))
    with pytest.raises(RecipeError, match=r"augment_dim > 0"):
        CNF(MLPVectorField(2, augment_dim=1))
    with pytest.raises(RecipeError, match=r"CNF.trace='fast' is not valid; must be one of 'auto', 'exact', 'hutchinson'"):
        CNF(MLPVectorField(2), trace="fast")
    with pytest.raises(RecipeError, match=r"CNF.noise='uniform' is not valid"):
        CNF(MLPVectorField(2), noise="uniform")
    with pytest.raises(RecipeError, match=r"regulariser weights must be >= 0"):
        CNF(MLPVectorField(2), kinetic_energy=-1.0)
    with pytest.raises(RecipeError, match=r"end_time must be > 0"):
        CNF(MLPVectorField(2), end_time=0.0)
    with pytest.raises(RecipeError, match=r"must declare an integer `dim`"):
        CNF(torch.nn.Linear(2, 2))
