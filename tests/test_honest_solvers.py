"""Exact solver statistics: every step and evaluation counted, forward and adjoint budgets apart (issue 9)."""

from __future__ import annotations

import math

import pytest
import torch
from torchdiffeq._impl import rk_common
from torchdiffeq._impl.odeint import SOLVERS

from nde_lab.dynamics.linear import LinearVectorField
from nde_lab.errors import SolverError
from nde_lab.solvers.ode import ODE_METHODS, ODESolverOptions, solve_ode

ADAPTIVE = [m for m, info in ODE_METHODS.items() if info.adaptive and not info.implicit]  # torchdiffeq (scipy: test_solvers_mechanistic)
FIXED = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}


class Counting:
    """The test's own vector field: a harmonic oscillator that counts its evaluations."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, t, y):
        self.calls += 1
        return torch.stack([y[..., 1], -y[..., 0]], -1)


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_methods_count_steps_and_evaluations_exactly(float64, method, monkeypatch):
    """Attempted steps counted by wrapping torchdiffeq's own step; accepted ones by the time advancing;
    evaluations = 2 (initial step selection) + attempted steps x the tableau's stages after the first."""
    attempted, accepted = [0], [0]
    step, adaptive_step = rk_common._runge_kutta_step, rk_common.RKAdaptiveStepsizeODESolver._adaptive_step

    def counting_step(*args, **kwargs):
        attempted[0] += 1
        return step(*args, **kwargs)

    def counting_adaptive(self, rk_state):
        new = adaptive_step(self, rk_state)
        accepted[0] += bool(new.t1 != rk_state.t1)
        return new

    monkeypatch.setattr(rk_common, "_runge_kutta_step", counting_step)
    monkeypatch.setattr(rk_common.RKAdaptiveStepsizeODESolver, "_adaptive_step", counting_adaptive)
    field = Counting()
    sol = solve_ode(field, torch.tensor([[1.0, 0.0]]), torch.linspace(0.0, 3.0, 4),
                    ODESolverOptions(method=method, rtol=1e-5, atol=1e-7))
    stats = sol.stats
    assert stats.nfe == field.calls
    assert stats.steps == accepted[0] and stats.steps + stats.steps_rejected == attempted[0]
    assert stats.nfe == 2 + attempted[0] * len(SOLVERS[method].tableau.alpha)
    assert stats.steps > 0 and (stats.nfe_backward, stats.steps_backward) == (0, 0)


@pytest.mark.parametrize(("method", "stages"), FIXED.items())
def test_fixed_methods_count_every_step(float64, method, stages):
    field = Counting()
    sol = solve_ode(field, torch.tensor([[1.0, 0.0]]), torch.tensor([0.0, 1.05]),
                    ODESolverOptions(method=method, step_size=0.1))
    assert sol.stats.steps == math.ceil(1.05 / 0.1) == 11  # the last step is clipped at t1
    assert sol.stats.nfe == field.calls == stages * 11


def test_adjoint_forward_and_backward_have_separate_budgets(float64):
    """255 rk4 steps each way fit a budget of 300 steps; a shared budget (old code) failed in .backward()."""
    field = LinearVectorField(2, matrix=[[0.0, 1.0], [-1.0, 0.0]])
    sol = solve_ode(field, torch.tensor([[1.0, 0.5]]), torch.tensor([0.0, 5.1]),
                    ODESolverOptions(method="rk4", step_size=0.02, adjoint=True, max_num_steps=300))
    sol.y[-1].sum().backward()
    s = sol.stats
    assert (s.steps, s.nfe, s.steps_backward) == (255, 1020, 255) and s.nfe_backward > 0


def test_an_exhausted_adjoint_backward_budget_is_a_solver_error(float64):
    """Backward in time the stiff mode of y' = diag(-0.5, -10) y grows, so the adjoint needs ~3x the
    forward's steps: with a budget just above the forward's, .backward() raises SolverError (not a private error)."""
    field = LinearVectorField(2, matrix=[[-0.5, 0.0], [0.0, -10.0]], trainable=True)
    opts = dict(method="dopri5", adjoint=True, rtol=1e-6, atol=1e-8)
    probe = solve_ode(field, torch.tensor([[1.0, 1.0]]), torch.tensor([0.0, 5.0]), ODESolverOptions(**opts))
    forward = probe.stats.steps + probe.stats.steps_rejected
    sol = solve_ode(field, torch.tensor([[1.0, 1.0]]), torch.tensor([0.0, 5.0]),
                    ODESolverOptions(**opts, max_num_steps=forward + 5))
    with pytest.raises(SolverError, match="adjoint backward solve: step budget exhausted.*max_num_steps"):
        sol.y[-1].sum().backward()
