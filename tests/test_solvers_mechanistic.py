"""Solvers for mechanistic models: breakpoints, scipy stiff methods with exact gradients, per-draw
adaptive steps with an implicit fallback, the stiffness diagnosis and the torch.compile option."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from torch import nn

from nde_lab.dynamics import LinearVectorField
from nde_lab.dynamics.classic import DampedOscillator, LogisticGrowth, LotkaVolterra
from nde_lab.dynamics.mechanistic import Input, MechanisticField
from nde_lab.errors import SolverError
from nde_lab.solvers import ODE_METHODS, ODESolverOptions, solve_ode

SCIPY = [m for m, info in ODE_METHODS.items() if info.implicit]


class Kicked(MechanisticField):
    """x'' + 2 zeta omega x' + omega^2 x = F once t > t_on (a user-style field: `torch.where` + `jump_times`,
    no analytic Jacobians, so the scipy methods differentiate it with torch)."""

    states = ("x", "v")
    parameters = ("omega", "zeta")
    constants = ("t_on", "F")

    def rhs(self, t, y, p):
        x, v = y[..., 0], y[..., 1]
        force = torch.where(t > p["t_on"], p["F"], 0.0)
        return torch.stack([v, -2 * p["zeta"] * p["omega"] * v - p["omega"] ** 2 * x + force], dim=-1)

    def jump_times(self):
        return [self.constant_values["t_on"]]


class Unbroken(Kicked):
    """The same field with its breakpoint hidden: what every solve did before breakpoints existed."""

    def breakpoints(self):
        return []


W, Z, F, SIGMA = 1.0, 0.1, 2.0, 0.2


def _scipy_piecewise(t: np.ndarray, t_on: float) -> np.ndarray:
    """The kicked oscillator at t by DOP853 at rtol = atol = 1e-12, integrated piecewise at t_on."""
    def fun(force):
        return lambda s, y: [y[1], -2 * Z * W * y[1] - W * W * y[0] + force]

    before = solve_ivp(fun(0.0), (0.0, t_on), [1.0, 0.0], method="DOP853", rtol=1e-12, atol=1e-12,
                       dense_output=True) if t_on > 0 else None
    start = before.y[:, -1] if before is not None else np.array([1.0, 0.0])
    after = solve_ivp(fun(F), (t_on, t[-1]), start, method="DOP853", rtol=1e-12, atol=1e-12, dense_output=True)
    return np.stack([before.sol(s) if before is not None and s <= t_on else after.sol(s) for s in t])


@pytest.mark.parametrize("t_on", [0.0, 2.0])
def test_breakpoints_forcing_loglik_within_1e4_of_scipy(float64, t_on):
    """A forcing switched on at t_on (the issue's t > 0 at t0, and a switch on the rk4 grid): every method
    with breakpoints gives the Normal log-likelihood within 1e-4 nats of a piecewise scipy solve at 1e-12;
    rk4 without them (the old behaviour) is off by far more."""
    t = torch.linspace(0.0, 10.0, 21)
    truth = _scipy_piecewise(t.numpy(), t_on)
    obs = torch.tensor(truth + SIGMA * np.random.default_rng(0).standard_normal(truth.shape))

    def loglik(y: torch.Tensor) -> float:
        return float(torch.distributions.Normal(y, SIGMA).log_prob(obs).sum())

    reference = loglik(torch.tensor(truth))
    y0 = torch.tensor([1.0, 0.0])
    field = Kicked(torch.tensor([W, Z]), constants={"t_on": t_on, "F": F})
    assert field.breakpoints() == [t_on]
    options = [ODESolverOptions(method="rk4", step_size=0.1), ODESolverOptions(method="dopri5", rtol=1e-8, atol=1e-10),
               ODESolverOptions(method="dopri5", rtol=1e-8, atol=1e-10, per_draw=True)]
    if t_on > 0:
        options.append(ODESolverOptions(method="lsoda", rtol=1e-10, atol=1e-10))
    for opt in options:
        err = loglik(solve_ode(field, y0, t, opt).y) - reference
        assert abs(err) < 1e-4, (opt.method, opt.per_draw, err)
    old = loglik(solve_ode(Unbroken(field.theta, constants=field.constant_values), y0, t, options[0]).y) - reference
    assert abs(old) > 0.05, old


def test_breakpoints_from_inputs_and_options_reach_the_grid(float64):
    """An `Input`'s change time and `ODESolverOptions.breakpoints` both land on the fixed-step grid."""
    seen: list[float] = []

    class Recording(DampedOscillator):
        def forward(self, t, y):
            seen.append(float(t))
            return super().forward(t, y)

    field = Recording(torch.tensor(1.0), torch.tensor(0.1), inputs={"force": Input([0.33], [1.0])})
    solve_ode(field, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]),
              ODESolverOptions(method="euler", step_size=0.1, breakpoints=[0.71]))
    for b in (0.33, 0.71):
        assert any(abs(s - b) < 1e-12 and s > b for s in seen), b  # a step starts just right of it
    assert any(abs(s - 0.43) < 1e-12 for s in seen)  # the grid restarts at the breakpoint


def test_breakpoints_with_adjoint_and_reversed_time(float64):
    """The adjoint (theta of a MechanisticField as its parameter; the fixed grid asked per interval) and a
    backward-in-time solve both respect the breakpoint: values and gradients match LSODA's."""
    theta = torch.tensor([1.0, 0.1], requires_grad=True)
    field = Kicked(theta, constants={"t_on": 2.05, "F": 2.0})
    t = torch.linspace(0.0, 5.0, 11)
    y0 = torch.tensor([1.0, 0.0])
    ref = solve_ode(field, y0, t, ODESolverOptions(method="lsoda", rtol=1e-11, atol=1e-11))
    want = torch.autograd.grad(ref.y.sum(), theta)[0]
    for opt, tol in ((ODESolverOptions(method="dopri5", rtol=1e-9, atol=1e-9, adjoint=True), 1e-7),
                     (ODESolverOptions(method="rk4", step_size=0.1, adjoint=True), 2e-4)):
        sol = solve_ode(field, y0, t, opt)
        assert torch.allclose(sol.y, ref.y, atol=tol / 10)
        assert torch.allclose(torch.autograd.grad(sol.y.sum(), theta)[0], want, atol=tol)
    back = solve_ode(field, ref.y[-1].detach(), t.flip(0), ODESolverOptions(method="rk4", step_size=0.1))
    assert torch.allclose(back.y, ref.y.flip(0), atol=1e-4)


def _logistic(r, k, y0, t):
    return k / (1 + (k / y0 - 1) * torch.exp(-r * t))


@pytest.mark.parametrize("method", SCIPY)
@pytest.mark.parametrize("coordinates", ["natural", "log"])
def test_scipy_methods_values_and_gradients_match_the_closed_form(float64, method, coordinates):
    """Logistic growth y = K / (1 + (K/y0 - 1) e^{-rt}): values and gradients in r, K and y0 (a batch
    of 3 draws) by forward sensitivities match the closed form's autograd to 1e-6."""
    r = torch.tensor([0.8, 1.5, 0.3], requires_grad=True)
    k = torch.tensor([10.0, 50.0, 5.0], requires_grad=True)
    z0 = torch.tensor([[1.0], [2.0], [4.0]], requires_grad=True)
    t = torch.linspace(0.0, 6.0, 13)
    field = LogisticGrowth(r, k, coordinates=coordinates)
    start = torch.log(z0) if coordinates == "log" else z0
    sol = solve_ode(field, start, t, ODESolverOptions(method=method, rtol=1e-11, atol=1e-11))
    y = torch.exp(sol.y) if coordinates == "log" else sol.y
    exact = _logistic(r, k, z0[:, 0], t.unsqueeze(-1)).unsqueeze(-1)  # (T, 3, 1)
    assert torch.allclose(y, exact, rtol=1e-7, atol=1e-7)
    weights = torch.randn(exact.shape)
    got = torch.autograd.grad((y * weights).sum(), (r, k, z0))
    want = torch.autograd.grad((exact * weights).sum(), (r, k, z0))
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, rtol=1e-6, atol=1e-6), (g, w)
    assert sol.stats.nfe > 0 and sol.stats.steps > 0 and sol.stats.method == method


def test_lsoda_gradients_match_dopri5_for_lotka_volterra_and_torch_fallback(float64):
    """LV in both coordinates (analytic pure-Python sensitivity systems) and the kicked oscillator (torch-differentiated, with a
    breakpoint): LSODA's value and gradient equal a tight dopri5 solve's autograd."""
    t = torch.arange(0.0, 11.0)
    theta = torch.tensor([[0.55, 0.028, 0.84, 0.026], [0.6, 0.03, 0.8, 0.025]], requires_grad=True)
    y0 = torch.log(torch.tensor([[33.0, 6.2], [30.0, 4.0]])).requires_grad_(True)
    cases = [(LotkaVolterra(theta, coordinates="log"), y0, (theta, y0))]
    z0 = torch.tensor([[33.0, 6.2], [30.0, 4.0]], requires_grad=True)
    cases.append((LotkaVolterra(theta, coordinates="natural"), z0, (theta, z0)))
    kt = torch.tensor([1.2, 0.15], requires_grad=True)
    k0 = torch.tensor([1.0, -0.5], requires_grad=True)
    cases.append((Kicked(kt, constants={"t_on": 2.5, "F": 1.0}), k0, (kt, k0)))
    for f, start, wrt in cases:
        fast = solve_ode(f, start, t[:7], ODESolverOptions(method="lsoda", rtol=1e-10, atol=1e-10))
        tight = solve_ode(f, start, t[:7], ODESolverOptions(method="dopri5", rtol=1e-10, atol=1e-10))
        assert torch.allclose(fast.y, tight.y, rtol=1e-7, atol=1e-7)
        weights = torch.randn(fast.y.shape)
        got = torch.autograd.grad((fast.y * weights).sum(), wrt)
        want = torch.autograd.grad((tight.y * weights).sum(), wrt)
        for g, w in zip(got, want, strict=True):
            assert torch.allclose(g, w, rtol=1e-6, atol=1e-6 * float(w.abs().max())), (g, w)


def _overdamped(omega, zeta):
    return torch.tensor([[0.0, 1.0], [-omega**2, -2 * zeta * omega]])


def test_bdf_solves_a_stiff_problem_in_few_steps(float64):
    """An overdamped oscillator with eigenvalues ~-1e5 and ~-10 (stiffness ratio 1e4): bdf and lsoda take
    a few hundred steps where an explicit method would need ~1e5, and values and gradients match the
    matrix exponential."""
    omega = torch.tensor(1000.0, requires_grad=True)
    zeta = torch.tensor(50.0, requires_grad=True)
    y0 = torch.tensor([1.0, 0.0], requires_grad=True)
    t = torch.linspace(0.0, 2.0, 9)
    field = DampedOscillator(omega, zeta)
    exact = torch.stack([torch.linalg.matrix_exp(torch.stack([
        torch.stack([torch.zeros(()), torch.ones(())]), torch.stack([-omega**2, -2 * zeta * omega])]) * s) @ y0 for s in t])
    weights = torch.randn(exact.shape)
    want = torch.autograd.grad((exact * weights).sum(), (omega, zeta, y0))
    for method in ("bdf", "lsoda"):
        sol = solve_ode(field, y0, t, ODESolverOptions(method=method, rtol=1e-9, atol=1e-12))
        assert sol.stats.steps < 2000, sol.stats  # an explicit method: ~6e4 steps (stability: h < 3.3e-5)
        assert torch.allclose(sol.y, exact, rtol=1e-6, atol=1e-9)
        got = torch.autograd.grad((sol.y * weights).sum(), (omega, zeta, y0))
        for g, w in zip(got, want, strict=True):
            assert torch.allclose(g, w, rtol=1e-4, atol=1e-7), (method, g, w)


def _oscillator_batch(n: int, stiff: bool) -> DampedOscillator:
    g = torch.Generator().manual_seed(1)
    omega = 0.5 + 1.5 * torch.rand(n, generator=g)
    zeta = 0.05 + 0.45 * torch.rand(n, generator=g)
    if stiff:  # one draw with eigenvalues ~-1e5 and ~-10
        omega[7], zeta[7] = 1000.0, 50.0
    return DampedOscillator(omega, zeta)


def test_per_draw_batch_with_one_stiff_member_costs_at_most_twice(float64):
    """Acceptance: 256 oscillator draws, one of them stiff. Per-draw stepping finishes it implicitly: no
    step-budget failure, wall time <= 2x the batch without it (best of 3, side by side), every member
    equal to its own solve. Plain dopri5 on the same batch runs out of its budget."""
    n = 256
    t = torch.linspace(0.0, 10.0, 11)
    y0 = torch.tensor([1.0, 0.0]).expand(n, 2)
    opt = ODESolverOptions(method="dopri5", rtol=1e-6, atol=1e-8, per_draw=True, max_num_steps=2000)
    smooth, stiff = _oscillator_batch(n, False), _oscillator_batch(n, True)
    best = {"smooth": float("inf"), "stiff": float("inf")}
    for _ in range(3):
        for name, field in (("smooth", smooth), ("stiff", stiff)):
            start = time.perf_counter()
            sol = solve_ode(field, y0, t, opt)
            best[name] = min(best[name], time.perf_counter() - start)
            assert sol.stats.status == "success"
            if name == "stiff":
                stiff_sol = sol
            else:
                smooth_sol = sol
    assert best["stiff"] <= 2.0 * best["smooth"], best
    assert stiff_sol.stats.members_implicit == 1 and smooth_sol.stats.members_implicit == 0
    # the other members are untouched by the stiff one, and equal their own solves
    others = [i for i in range(n) if i != 7]
    assert torch.equal(stiff_sol.y[:, others], smooth_sol.y[:, others])
    for i in (0, 100, 255):
        alone = solve_ode(DampedOscillator(smooth.theta[i]), y0[i], t, opt).y
        assert torch.allclose(alone, smooth_sol.y[:, i], rtol=0, atol=1e-12)
    stiff_alone = solve_ode(DampedOscillator(stiff.theta[7]), y0[7], t, ODESolverOptions(method="lsoda", rtol=1e-6, atol=1e-8))
    assert torch.allclose(stiff_sol.y[:, 7], stiff_alone.y, atol=1e-9)
    exact = torch.stack([torch.linalg.matrix_exp(_overdamped(1000.0, 50.0) * s) @ y0[7] for s in t])
    assert torch.allclose(stiff_sol.y[:, 7], exact, atol=1e-5)
    reference = solve_ode(smooth, y0, t, ODESolverOptions(method="dopri5", rtol=1e-10, atol=1e-10)).y
    assert torch.allclose(smooth_sol.y, reference, atol=1e-5)
    # the old way: one step size for the whole batch, the stiff draw exhausts everyone's budget
    with pytest.raises(SolverError, match="step budget exhausted"):
        solve_ode(stiff, y0, t, ODESolverOptions(method="dopri5", rtol=1e-6, atol=1e-8, max_num_steps=300))


def test_per_draw_gradients_match_a_batched_solve(float64):
    omega = torch.tensor([0.7, 1.3, 1000.0], requires_grad=True)
    zeta = torch.tensor([0.1, 0.3, 50.0])
    t = torch.linspace(0.0, 3.0, 7)
    y0 = torch.tensor([1.0, 0.0])
    weights = torch.randn(7, 3, 2)
    sol = solve_ode(DampedOscillator(omega, zeta), y0.expand(3, 2), t,
                    ODESolverOptions(method="dopri5", rtol=1e-10, atol=1e-10, per_draw=True, max_num_steps=300))
    assert sol.stats.members_implicit == 1
    got = torch.autograd.grad((sol.y * weights).sum(), omega)[0]
    ref = solve_ode(DampedOscillator(omega, zeta), y0.expand(3, 2), t, ODESolverOptions(method="lsoda", rtol=1e-10, atol=1e-10))
    want = torch.autograd.grad((ref.y * weights).sum(), omega)[0]
    assert torch.allclose(got, want, rtol=1e-6, atol=1e-9), (got, want)


def test_per_draw_hands_over_many_stiff_draws_early(float64):
    """5% stiff draws (more than the 1% of stragglers): handed over once half the batch is done, not after
    their own step budget; the batch stays within its explicit steps and matches LSODA."""
    field = _oscillator_batch(80, False)
    theta = field.theta.clone()
    theta[::20] = torch.tensor([1000.0, 50.0])
    field = DampedOscillator(theta)
    y0 = torch.tensor([1.0, 0.0]).expand(80, 2)
    t = torch.linspace(0.0, 10.0, 6)
    sol = solve_ode(field, y0, t, ODESolverOptions(method="dopri5", rtol=1e-6, atol=1e-8, per_draw=True))
    assert sol.stats.members_implicit == 4 and sol.stats.steps < 300, sol.stats
    ref = solve_ode(field, y0, t, ODESolverOptions(method="lsoda", rtol=1e-9, atol=1e-11))
    assert torch.allclose(sol.y, ref.y, atol=1e-5)


def test_explicit_method_on_a_stiff_problem_names_the_fix(float64):
    """dopri5 on the stiff draw: the budget error says the problem looks stiff and names bdf/lsoda and
    per_draw. A blow-up (y' = y^2) also exhausts the budget but is not called stiff."""
    field = _oscillator_batch(16, True)
    t = torch.linspace(0.0, 10.0, 11)
    with pytest.raises(SolverError) as err:
        solve_ode(field, torch.tensor([1.0, 0.0]).expand(16, 2), t,
                  ODESolverOptions(method="dopri5", max_num_steps=200))
    text = str(err.value)
    assert "looks stiff (batch member 7 of 16)" in text
    assert "solver.method: lsoda" in text and "bdf" in text and "solver.per_draw: true" in text

    class Square(nn.Module):
        def forward(self, t, y):
            return y * y

    with pytest.raises(SolverError) as err:
        solve_ode(Square(), torch.tensor([1.0]), torch.tensor([0.0, 2.0]), ODESolverOptions(method="dopri5", max_num_steps=200))
    assert "looks stiff" not in str(err.value) and "step budget exhausted" in str(err.value)


def test_scipy_and_per_draw_need_a_mechanistic_field(float64):
    field = LinearVectorField(2, matrix=[[-1.0, 0.0], [0.0, -2.0]], trainable=False)
    for opt in (ODESolverOptions(method="bdf"), ODESolverOptions(method="dopri5", per_draw=True)):
        with pytest.raises(SolverError, match="needs a MechanisticField") as err:
            solve_ode(field, torch.ones(2), torch.tensor([0.0, 1.0]), opt)
        assert repr(opt.method) in str(err.value)
    with pytest.raises(SolverError, match="solver.per_draw=true .* explicit adaptive method"):
        ODESolverOptions(method="rk4", step_size=0.1, per_draw=True)
    with pytest.raises(SolverError, match="'lsoda'"):
        ODESolverOptions(method="lsoda", adjoint=True)
    # throw=False: a failed scipy solve returns NaN and the message, like the torchdiffeq methods
    sol = solve_ode(DampedOscillator(torch.tensor(1000.0), torch.tensor(50.0)), torch.tensor([1.0, 0.0]),
                    torch.tensor([0.0, 10.0]), ODESolverOptions(method="bdf", max_num_steps=3), throw=False)
    assert sol.stats.status == "failed" and "budget" in sol.stats.message and torch.isnan(sol.y).all()


@pytest.mark.slow  # the first torch.compile costs ~20 s (up to 100 s on two loaded CPU cores)
def test_compile_option_gives_the_same_values(float64):
    torch.manual_seed(0)
    field = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))

    class Field(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = field

        def forward(self, t, y):
            return self.net(y)

    f = Field()
    y0, t = torch.randn(8, 2), torch.linspace(0.0, 1.0, 3)
    eager = solve_ode(f, y0, t, ODESolverOptions(method="rk4", step_size=0.25)).y
    validate = torch.distributions.Distribution._validate_args
    assert validate  # torch's default (and Pyro's under __debug__)
    compiled = solve_ode(f, y0, t, ODESolverOptions(method="rk4", step_size=0.25, compile=True)).y
    assert torch.allclose(compiled, eager, atol=1e-12)
    # dynamo's set-up switches distribution validation off process-wide; the option leaves it as it was
    assert torch.distributions.Distribution._validate_args == validate
