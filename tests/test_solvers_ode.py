"""The ODE solver seam: convergence orders, tolerances, gradients, statistics and failures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from nde_lab.dynamics import LinearVectorField
from nde_lab.errors import SolverError
from nde_lab.solvers import ODE_METHODS, ODESolverOptions, solve_ode

A = [[-0.5, 2.0], [-2.0, -0.5]]


def _linear_problem():
    field = LinearVectorField(2, matrix=A, trainable=False)
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    return field, y0


def _exact(y0: torch.Tensor, t: float) -> torch.Tensor:
    return torch.linalg.matrix_exp(torch.tensor(A, dtype=torch.float64) * t) @ y0


@pytest.mark.parametrize("method", [m for m, info in ODE_METHODS.items() if not info.adaptive])
def test_fixed_step_convergence_order_matches_declared_order(float64, method):
    field, y0 = _linear_problem()
    t_end = 2.0
    steps = np.array([0.1, 0.05, 0.025, 0.0125])
    if ODE_METHODS[method].order >= 4:
        steps = steps * 2  # keep rk4 errors far above float64 round-off
    errors = []
    for h in steps:
        t = torch.tensor([0.0, t_end], dtype=torch.float64)
        y = solve_ode(field, y0, t, ODESolverOptions(method=method, step_size=float(h))).y[-1]
        errors.append(float(torch.linalg.vector_norm(y - _exact(y0, t_end))))
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - ODE_METHODS[method].order) < 0.5, (method, slope, errors)


@pytest.mark.parametrize("rtol", [1e-3, 1e-5, 1e-7])
def test_dopri5_meets_its_tolerance(float64, rtol):
    """Global error at every output time within atol + rtol * max|y| (the tolerance's own scale)."""
    field, y0 = _linear_problem()
    t = torch.linspace(0.0, 2.0, 11, dtype=torch.float64)
    atol = rtol * 1e-2
    sol = solve_ode(field, y0, t, ODESolverOptions(method="dopri5", rtol=rtol, atol=atol))
    exact = torch.stack([_exact(y0, float(s)) for s in t])
    assert ((sol.y - exact).abs() / (atol + rtol * exact.abs().max())).max() < 1.0
    assert sol.stats.nfe > 0 and sol.stats.steps > 0 and sol.stats.status == "success"


def test_adjoint_gradients_equal_direct_gradients(float64):
    torch.manual_seed(1)
    class Field(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))

        def forward(self, t, y):
            return self.net(y)

    field = Field()
    y0 = torch.tensor([[1.0, -0.5], [0.3, 0.2]], dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    grads = {}
    for adjoint in (False, True):
        field.zero_grad()
        options = ODESolverOptions(method="dopri5", rtol=1e-10, atol=1e-12, adjoint=adjoint)
        solve_ode(field, y0, t, options).y.pow(2).sum().backward()
        grads[adjoint] = torch.cat([p.grad.flatten() for p in field.parameters()])
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-6, atol=1e-8)


def test_gradcheck_through_the_solver(float64):
    matrix = torch.tensor(A, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)

    def solve(a, y0):
        class Field(nn.Module):
            def forward(self, t, y):
                return y @ a.T

        return solve_ode(Field(), y0, t, ODESolverOptions(method="rk4", step_size=0.05)).y

    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(solve, (matrix, y0))


def test_batched_solve_matches_individual_solves(float64):
    field, _ = _linear_problem()
    y0 = torch.randn(5, 3, 2, dtype=torch.float64)
    t = torch.linspace(0, 1, 4, dtype=torch.float64)
    options = ODESolverOptions(method="rk4", step_size=0.01)
    batched = solve_ode(field, y0, t, options).y
    assert batched.shape == (4, 5, 3, 2)
    torch.testing.assert_close(batched[:, 2, 1], solve_ode(field, y0[2, 1], t, options).y)


def test_nfe_counts_fixed_steps_exactly(float64):
    field, y0 = _linear_problem()
    sol = solve_ode(field, y0, torch.tensor([0.0, 1.0]), ODESolverOptions(method="rk4", step_size=0.1))
    assert sol.stats.steps == 10 and sol.stats.nfe == 40


# ---- errors ------------------------------------------------------------------------------------------
class Explosive(nn.Module):
    def forward(self, t, y):
        return y**2


def test_unknown_method_lists_valid_choices():
    with pytest.raises(SolverError, match=r"solver.method='rk45' is not valid; must be one of .*'dopri5'.*Did you mean 'rk4'"):
        ODESolverOptions(method="rk45")


def test_fixed_step_method_without_step_size_says_how_to_fix():
    with pytest.raises(SolverError, match="needs solver.step_size"):
        ODESolverOptions(method="rk4")


@pytest.mark.parametrize("key,value", [("rtol", 0.0), ("atol", -1.0), ("step_size", -0.1), ("max_num_steps", 0)])
def test_invalid_numbers_are_rejected(key, value):
    kwargs = {"method": "euler", "step_size": 0.1, key: value}
    with pytest.raises(SolverError, match=f"solver.{key}"):
        ODESolverOptions(**kwargs)


def test_blow_up_with_fixed_step_names_method_time_and_hint():
    t = torch.linspace(0.0, 2.0, 5)
    with pytest.raises(SolverError, match=r"non-finite state\) with method='rk4' at t=1\.5.*hint: .*step_size"):
        solve_ode(Explosive(), torch.ones(2), t, ODESolverOptions(method="rk4", step_size=0.1))


def test_blow_up_with_adaptive_step_is_a_solver_error_not_an_assertion():
    with pytest.raises(SolverError, match=r"method='dopri5' at t=.*rtol=1e-06"):
        solve_ode(Explosive(), torch.ones(2), torch.linspace(0.0, 2.0, 5))


def test_step_budget_exhausted():
    options = ODESolverOptions(method="dopri5", rtol=1e-12, atol=1e-12, max_num_steps=5)
    with pytest.raises(SolverError, match="step budget exhausted"):
        solve_ode(LinearVectorField(2, matrix=A), torch.ones(2), torch.linspace(0, 10, 3), options)


def test_fixed_step_budget_checked_before_solving():
    with pytest.raises(SolverError, match="needs 1000 steps, more than solver.max_num_steps=10"):
        solve_ode(Explosive(), torch.ones(2), torch.tensor([0.0, 1.0]), ODESolverOptions(method="euler", step_size=1e-3, max_num_steps=10))


def test_throw_false_returns_a_failed_status():
    sol = solve_ode(Explosive(), torch.ones(2), torch.linspace(0.0, 2.0, 5), ODESolverOptions(method="rk4", step_size=0.1), throw=False)
    assert sol.stats.status == "failed" and "non-finite" in sol.stats.message
    assert torch.isnan(sol.y).all()


@pytest.mark.parametrize("bad_t,match", [(torch.tensor([0.0, 1.0, 1.0]), "strictly increasing"), (torch.tensor(1.0), "1-D")])
def test_bad_time_grids(bad_t, match):
    with pytest.raises(SolverError, match=match):
        solve_ode(Explosive(), torch.ones(2), bad_t)


def test_failures_stay_loud_under_python_O():
    """torchdiffeq reports underflow and exhausted budgets with `assert`, which -O strips."""
    script = textwrap.dedent(
        """
        import torch
        from torch import nn
        from nde_lab.errors import SolverError
        from nde_lab.solvers import ODESolverOptions, solve_ode
        class F(nn.Module):
            def forward(self, t, y):
                return y ** 2
        for method in ("dopri5", "rk4"):
            opts = ODESolverOptions(method=method, step_size=0.1 if method == "rk4" else None, max_num_steps=2000)
            try:
                solve_ode(F(), torch.ones(2), torch.linspace(0.0, 2.0, 5), opts)
            except SolverError as err:
                print(method, "SolverError", str(err)[:40])
            else:
                print(method, "no error")
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("SolverError") == 2, out.stdout
