"""The mechanistic-field contract (issue 12): classic fields' analytic Jacobians equal autograd's, inputs
step and interpolate the same on the scalar and the per-draw path, log coordinates solve the same ODE."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nde_lab.dynamics import (
    SEIR,
    SIR,
    DampedOscillator,
    Input,
    LogisticGrowth,
    LotkaVolterra,
    MechanisticField,
)
from nde_lab.solvers.ode import ODESolverOptions, solve_ode

CASES = [
    (LotkaVolterra, {}, [0.55, 0.028, 0.8, 0.024], [3.0, 2.5], ("natural", "log")),
    (LogisticGrowth, {}, [0.3, 50.0], [2.0], ("natural", "log")),
    (SIR, {"N": 763.0}, [1.7, 0.5], [700.0, 50.0, 13.0], ("natural",)),
    (SEIR, {"N": 763.0}, [1.7, 0.9, 0.5], [700.0, 20.0, 30.0, 13.0], ("natural",)),
    (DampedOscillator, {}, [2.0, 0.1], [1.0, 0.3], ("natural",)),
]


@pytest.mark.parametrize(("cls", "constants", "theta", "y", "coords"), CASES, ids=[c[0].__name__ for c in CASES])
def test_analytic_jacobians_equal_autograd(float64, cls, constants, theta, y, coords):
    theta, y, t = torch.tensor(theta), torch.tensor(y), torch.tensor(0.3)
    for coordinates in coords:
        field = cls(theta, constants=constants, coordinates=coordinates)
        x = field.to_solve(y)
        f, jy, jp = field.jacobians(0.3, x.numpy(), theta.numpy())
        np.testing.assert_allclose(f, field.f(t, x, theta).numpy(), rtol=1e-12, atol=1e-12)
        jac_y = torch.autograd.functional.jacobian(lambda x_, fld=field: fld.f(t, x_, theta), x)
        jac_p = torch.autograd.functional.jacobian(lambda th, fld=field, x0=x: fld.f(t, x0, th), theta)
        np.testing.assert_allclose(jy, jac_y.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(jp, jac_p.numpy(), rtol=1e-12, atol=1e-12)


def test_inputs_agree_on_the_scalar_and_the_per_draw_path(float64):
    ts = torch.tensor([0.0, 3.99, 4.0, 4.01, 6.0, 8.0, 9.0])
    step = Input([4.0, 8.0], [30.0, 5.0], "step")
    linear = Input([4.0, 8.0], [30.0, 5.0], "linear")
    assert [step(t) for t in ts] == [0.0, 0.0, 30.0, 30.0, 30.0, 5.0, 5.0] == step(ts).tolist()
    expected = [30.0, 30.0, 30.0, 30.0 - 25.0 * 0.01 / 4, 17.5, 5.0, 5.0]
    np.testing.assert_allclose([linear(t) for t in ts], expected, rtol=1e-12)
    np.testing.assert_allclose(linear(ts).numpy(), expected, rtol=1e-12)
    assert step.breakpoints == [4.0, 8.0]
    field = DampedOscillator(torch.tensor([2.0, 0.1]), inputs={"force": step})
    assert field.breakpoints() == [4.0, 8.0]
    with pytest.raises(ValueError, match="strictly increasing"):
        Input([2.0, 1.0], [0.0, 1.0])


def test_default_log_coordinates_solve_the_same_ode(float64):
    """A positive user field without its own rhs_log: dx/dt = f(e^x) / e^x, the same trajectory."""

    class Decay(MechanisticField):
        states = ("a", "b")
        parameters = ("k",)
        positive = True

        def rhs(self, t, y, p):
            k = p["k"].unsqueeze(-1)
            return torch.stack([-k[..., 0] * y[..., 0], k[..., 0] * y[..., 0] - 0.5 * y[..., 1]], dim=-1)

    theta = torch.tensor([[0.7], [1.3]])
    t = torch.linspace(0, 3, 7)
    z0 = torch.tensor([5.0, 1.0]).expand(2, 2)
    opts = ODESolverOptions(method="dopri5", rtol=1e-10, atol=1e-12)
    natural = solve_ode(Decay(theta), z0, t, opts).y
    logged = solve_ode(Decay(theta, coordinates="log"), z0.log(), t, opts).y.exp()
    torch.testing.assert_close(logged, natural, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(natural[-1, :, 0].numpy(), 5.0 * np.exp(-3 * theta[:, 0].numpy()), rtol=1e-8)
    with pytest.raises(ValueError, match=r"theta must have shape \(\*batch, 1\)"):
        Decay(torch.ones(2, 3))
    with pytest.raises(ValueError, match="needs a model whose states stay positive"):
        SIR(torch.ones(2), constants={"N": 1.0}, coordinates="log")
    with pytest.raises(ValueError, match=r"missing \['N'\]"):
        SIR(torch.ones(2))
