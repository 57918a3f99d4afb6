"""The SDE solver seam: strong/weak convergence, seeding, Brownian grids and every validation branch."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from nde_lab.dynamics.sde import SDE
from nde_lab.dynamics.sde_parametric import GeometricBrownianMotion, OrnsteinUhlenbeck
from nde_lab.errors import SolverError
from nde_lab.solvers.brownian import GridBrownian, interval_brownian, make_grid
from nde_lab.solvers.sde import SDE_METHODS, SDESolverOptions, solve_sde, valid_methods


def _slope(steps: list[float], errors: list[float]) -> float:
    x, y = torch.tensor(steps).log(), torch.tensor(errors).log()
    return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())


@pytest.mark.parametrize(("method", "order"), [("euler", 0.5), ("milstein", 1.0)])
def test_strong_order_on_gbm_against_the_exact_pathwise_solution(float64, method, order):
    gbm = GeometricBrownianMotion(mu=0.5, sigma=0.8)
    n, t_end = 2000, 1.0
    bm = GridBrownian(0.0, t_end, dt=2.0**-10, size=(n, 1), seed=1)  # one fine path, shared by every step
    y0, t = torch.ones(n, 1), torch.tensor([0.0, t_end])
    with torch.no_grad():
        exact = gbm.exact(y0, t, torch.stack([bm(0.0), bm(t_end)]))[-1]
    steps = [2.0**-k for k in range(3, 8)]
    errors = []
    for h in steps:
        with torch.no_grad():
            sol = solve_sde(gbm, y0, t, options=SDESolverOptions(method=method, dt=h), bm=bm)
            errors.append(float((sol.y[-1] - exact).abs().mean()))
    assert abs(_slope(steps, errors) - order) < 0.3, (method, errors)
    assert SDE_METHODS[method].strong_order == order


def test_ou_weak_mean_and_variance_match_closed_forms(float64):
    theta, mu, sigma, x0 = 1.5, 1.0, 0.7, -0.5
    ou = OrnsteinUhlenbeck(theta=theta, mu=mu, sigma=sigma)
    n = 4000
    t = torch.tensor([0.0, 0.25, 0.5, 1.0, 2.0])
    with torch.no_grad():
        sol = solve_sde(ou, torch.full((n, 1), x0), t, options=SDESolverOptions(method="euler", dt=1e-3), seed=7)
        mean, var = ou.mean_var(x0, t)
    y = sol.y[1:, :, 0]
    for k in range(y.shape[0]):
        m_hat, v_hat = y[k].mean(), y[k].var()
        se_mean = (v_hat / n).sqrt()
        se_var = (((y[k] - m_hat) ** 4).mean() - v_hat**2).div(n).sqrt()
        assert abs(m_hat - mean[k + 1, 0]) < 4 * se_mean, (k, m_hat, mean[k + 1])
        assert abs(v_hat - var[k + 1, 0]) < 4 * se_var, (k, v_hat, var[k + 1])


class _MLPSDE(SDE):
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, sde_type: str = "ito") -> None:
        super().__init__()
        self.sde_type, self.state_dim = sde_type, 2
        self.fn = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2))
        self.gn = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2), nn.Sigmoid())

    def f(self, t, y):
        return self.fn(y)

    def g(self, t, y):
        return self.gn(y)


def test_same_seed_same_paths_bit_for_bit_and_a_different_seed_differs():
    sde, y0, t = _MLPSDE(), torch.zeros(64, 2), torch.linspace(0, 1, 11)
    opts = SDESolverOptions(dt=0.01)
    with torch.no_grad():
        a, b = (solve_sde(sde, y0, t, options=opts, seed=3).y for _ in range(2))
        c = solve_sde(sde, y0, t, options=opts, seed=4).y
        adaptive = SDESolverOptions(method="milstein", dt=0.05, adaptive=True, rtol=1e-2, atol=1e-3)
        d, e = (solve_sde(sde, y0[:8], t[:3], options=adaptive, seed=3).y for _ in range(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert torch.equal(d, e)


@pytest.mark.parametrize("sde_type", ["ito", "stratonovich"])
def test_every_valid_method_solves_a_diagonal_sde(sde_type):
    sde, y0, t = _MLPSDE(sde_type), torch.zeros(8, 2), torch.linspace(0, 1, 5)
    for method in valid_methods("diagonal", sde_type):
        with torch.no_grad():
            sol = solve_sde(sde, y0, t, options=SDESolverOptions(method=method, dt=0.05), seed=0)
        assert sol.y.shape == (5, 8, 2) and bool(sol.finite.all()) and sol.stats.steps == 20, method


def test_adjoint_gradients_agree_with_direct_backpropagation(float64):
    ou = OrnsteinUhlenbeck(theta=1.0, mu=0.5, sigma=0.3)
    y0, t = torch.zeros(256, 1), torch.tensor([0.0, 1.0])
    grads = []
    for adjoint in (False, True):
        ou.zero_grad()
        opts = SDESolverOptions(method="euler", dt=1e-2, adjoint=adjoint)
        # both solves use the seeded BrownianInterval, so they integrate the same Brownian path
        bm = None if adjoint else interval_brownian(0.0, 1.0, size=(256, 1), seed=5)
        sol = solve_sde(ou, y0, t, options=opts, seed=5, bm=bm)
        (sol.y[-1] ** 2).mean().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in ou.parameters()]))
    assert torch.allclose(grads[0], grads[1], rtol=0.05, atol=1e-3), grads


def test_grid_brownian_increments_add_up_and_have_the_right_variance(float64):
    bm = GridBrownian(0.0, 1.0, dt=0.1, size=(20000, 1), seed=0)
    assert bm.grid.numel() == 11 and torch.equal(bm(0.0, 0.1), bm.dW[0])
    assert torch.allclose(bm(0.2, 0.7), bm(0.2, 0.5) + bm(0.5, 0.7))
    assert abs(float(bm(0.0, 1.0).var()) - 1.0) < 4 * math.sqrt(2 / 20000)
    short = make_grid(0.0, 1.05, 0.1)  # last step clipped at t1
    assert short.numel() == 12 and abs(float(short[-1] - short[-2]) - 0.05) < 1e-12
    with pytest.raises(SolverError, match="not on its grid"):
        bm(0.0, 0.15)
    with pytest.raises(SolverError, match="Levy area"):
        bm(0.0, 0.1, return_U=True)


# ---- validation branches --------------------------------------------------------------------------
class _General(_MLPSDE):
    noise_type = "general"

    def g(self, t, y):
        return self.gn(y)[..., None].expand(-1, 2, 3)


def test_method_not_valid_for_the_noise_type_lists_the_valid_ones():
    with pytest.raises(SolverError, match=r"'milstein' is not valid .*noise_type='general'.*must be one of 'euler'"):
        solve_sde(_General(), torch.zeros(4, 2), torch.tensor([0.0, 1.0]), options=SDESolverOptions(method="milstein"), seed=0)
    with pytest.raises(SolverError, match=r"sde_type='stratonovich'.*must be one of 'milstein', 'midpoint'"):
        solve_sde(_MLPSDE("stratonovich"), torch.zeros(4, 2), torch.tensor([0.0, 1.0]), options=SDESolverOptions(method="euler"), seed=0)
    with pytest.raises(SolverError, match="must be one of 'euler', 'milstein'"):
        SDESolverOptions(method="rk4")


def test_diffusion_of_the_wrong_shape_names_expected_and_received_shapes():
    class Bad(_MLPSDE):
        def g(self, t, y):
            return self.gn(y)[..., None].expand(-1, 2, 2)

    with pytest.raises(SolverError, match=r"noise_type='diagonal' must return shape \(4, 2\), got \(4, 2, 2\)"):
        solve_sde(Bad(), torch.zeros(4, 2), torch.tensor([0.0, 1.0]), seed=0)

    class BadDrift(_MLPSDE):
        def f(self, t, y):
            return self.fn(y)[:, :1]

    with pytest.raises(SolverError, match=r"drift\) must return shape \(batch, state\) = \(4, 2\), got \(4, 1\)"):
        solve_sde(BadDrift(), torch.zeros(4, 2), torch.tensor([0.0, 1.0]), seed=0)


@pytest.mark.parametrize("dt", [0.0, -0.1, float("nan")])
def test_non_positive_step_is_rejected(dt):
    with pytest.raises(SolverError, match=r"solver\.dt must be a positive finite number"):
        SDESolverOptions(dt=dt)
    with pytest.raises(SolverError, match="dt must be a positive finite number"):
        GridBrownian(0.0, 1.0, dt=dt, size=(1, 1), seed=0)


class _BlowUp(SDE):
    noise_type, sde_type, state_dim = "diagonal", "ito", 1

    def f(self, t, y):
        return y**3

    def g(self, t, y):
        return 0.1 * torch.ones_like(y)


def test_a_drift_that_blows_up_raises_or_is_masked_and_counted():
    y0 = torch.tensor([[0.1], [50.0], [0.2]])  # the middle path explodes
    t = torch.linspace(0, 1, 6)
    with pytest.raises(SolverError, match=r"1 of 3 paths turned non-finite.*method='euler'.*on_nonfinite='mask'"):
        solve_sde(_BlowUp(), y0, t, options=SDESolverOptions(dt=0.01), seed=0)
    sol = solve_sde(_BlowUp(), y0, t, options=SDESolverOptions(dt=0.01, on_nonfinite="mask"), seed=0)
    assert sol.stats.masked_paths == 1 and sol.finite.tolist() == [True, False, True]
    assert sol.valid_paths().shape == (6, 2, 1) and bool(torch.isfinite(sol.valid_paths()).all())
    with pytest.raises(SolverError, match="non-finite drift"):  # adaptive steps must not loop forever
        solve_sde(_BlowUp(), y0, t, options=SDESolverOptions(dt=0.01, adaptive=True), seed=0)
    failed = solve_sde(_BlowUp(), y0, t, options=SDESolverOptions(dt=0.01), seed=0, throw=False)
    assert failed.stats.status == "failed" and "non-finite" in failed.stats.message


def test_other_boundary_checks():
    ou, t = OrnsteinUhlenbeck(), torch.tensor([0.0, 1.0])
    with pytest.raises(SolverError, match="explicit seed"):
        solve_sde(ou, torch.zeros(2, 1), t)
    with pytest.raises(SolverError, match=r"y0 must have shape \(batch, state\)"):
        solve_sde(ou, torch.zeros(1), t, seed=0)
    with pytest.raises(SolverError, match="strictly increasing"):
        solve_sde(ou, torch.zeros(2, 1), torch.tensor([1.0, 0.0]), seed=0)
    with pytest.raises(SolverError, match=r"more than solver\.max_num_steps=10"):
        solve_sde(ou, torch.zeros(2, 1), t, options=SDESolverOptions(dt=0.01, max_num_steps=10), seed=0)
    with pytest.raises(SolverError, match="on_nonfinite='drop' is not valid"):
        SDESolverOptions(on_nonfinite="drop")


class _ConstantNoise(torch.nn.Module):
    """dY = -Y dt + 0.5 dW, as diagonal or additive noise (what srk's two schemes need)."""

    def __init__(self, sde_type: str, noise_type: str) -> None:
        super().__init__()
        self.sde_type, self.noise_type = sde_type, noise_type

    def f(self, t, y):
        return -y

    def g(self, t, y):
        return 0.5 * torch.ones_like(y) if self.noise_type == "diagonal" else 0.5 * torch.ones(y.shape[0], 1, 1, dtype=y.dtype)


@pytest.mark.parametrize("noise_type", ["diagonal", "additive"])
def test_adaptive_sde_steps_are_counted_exactly_for_every_method(float64, noise_type, monkeypatch):
    """`stats.steps` of an adaptive solve equals the attempted steps: torchsde's own `step` calls / 3 (a
    full and two half steps per attempt), for methods with 1, 2, 3 and 10 drift evaluations per step."""
    import torchsde._core.methods as torchsde_methods

    for sde_type in ("ito", "stratonovich"):
        for method in valid_methods(noise_type, sde_type):
            solver_class = torchsde_methods.select(method, sde_type)
            # srk binds its step in __init__, one scheme per noise type
            name = "step" if method != "srk" else ("additive_step" if noise_type == "additive" else "diagonal_or_scalar_step")
            calls = {"n": 0}
            original = getattr(solver_class, name)

            def counting_step(self, *args, _original=original, _calls=calls, **kwargs):
                _calls["n"] += 1
                return _original(self, *args, **kwargs)

            monkeypatch.setattr(solver_class, name, counting_step)
            sde = _ConstantNoise(sde_type, noise_type)
            options = SDESolverOptions(method=method, dt=0.01, adaptive=True, rtol=1e-3, atol=1e-4)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sol = solve_sde(sde, torch.ones(4, 1), torch.tensor([0.0, 1.0]), options=options, seed=0)
            monkeypatch.undo()
            assert calls["n"] % 3 == 0 and calls["n"] > 0, method
            assert sol.stats.steps == calls["n"] // 3, (method, sol.stats.steps, calls["n"], sol.stats.nfe_drift)
