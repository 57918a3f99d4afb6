"""Empirical NTK against explicit Jacobians, analytic infinite-width kernels against Monte Carlo, and the
parametrisations' abc-table (default bit-identical to the plain MLP)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from nde_lab.dynamics import MLP, MLPVectorField
from nde_lab.dynamics.parametrization import PARAMETRIZATIONS, layer_scales
from nde_lab.solvers import ODESolverOptions, solve_ode
from nde_lab.theory import empirical_ntk, flow_map_ntk, infinite_width_kernels

pytestmark = pytest.mark.usefixtures("float64")


def _explicit_jacobian(net: nn.Module, call) -> torch.Tensor:
    """J (outputs, params) by torch.autograd.functional.jacobian over the flattened parameters."""
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])

    def of_theta(flat: torch.Tensor) -> torch.Tensor:
        params, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            size = int(np.prod(shape))
            params[name] = flat[start:start + size].view(shape)
            start += size
        return call(params).reshape(-1)

    return torch.autograd.functional.jacobian(of_theta, theta)


@pytest.mark.parametrize("method", ["jacobian", "ntk_vps"])
@pytest.mark.parametrize("kind", ["mlp", "vector_field", "decoder"])
def test_empirical_ntk_equals_explicit_jacobian_product(method, kind):
    x = torch.randn(5, 3)
    if kind == "mlp":
        net = MLP(3, 2, width=16, depth=2, activation="tanh", parametrization="mup")
        call = lambda p: functional_call(net, p, (x,))  # noqa: E731
    elif kind == "vector_field":
        net = MLPVectorField(3, width=16, time_input=True)
        call = lambda p: functional_call(net, p, (torch.tensor(0.0), x))  # noqa: E731
    else:  # a VAE-decoder-like plain module
        net = nn.Sequential(nn.Linear(3, 8), nn.Softplus(), nn.Linear(8, 4), nn.Sigmoid())
        call = lambda p: functional_call(net, p, (x,))  # noqa: E731
    kernel = empirical_ntk(net, x, method=method)  # (N, N, O, O)
    jac = _explicit_jacobian(net, call)  # (N*O, P), point-major
    n, _, o, _ = kernel.shape
    expected = (jac @ jac.T).reshape(n, o, n, o).permute(0, 2, 1, 3)
    torch.testing.assert_close(kernel, expected, rtol=0, atol=1e-10)


def test_flow_map_ntk_equals_explicit_jacobian_product():
    field = MLPVectorField(2, width=8, depth=1, final_scale=1.0)
    y0 = torch.randn(3, 2)
    options = ODESolverOptions(method="rk4", step_size=0.05)
    kernel = flow_map_ntk(field, y0, 0.5, options=options)
    t = torch.tensor([0.0, 0.5])

    class Bound(nn.Module):
        def __init__(self, params):
            super().__init__()
            self.params = params

        def forward(self, t, y):
            return functional_call(field, self.params, (t, y))

    jac = _explicit_jacobian(field, lambda p: solve_ode(Bound(p), y0, t, options).y[-1])
    expected = (jac @ jac.T).reshape(3, 2, 3, 2).permute(0, 2, 1, 3)
    torch.testing.assert_close(kernel, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_analytic_kernels_match_monte_carlo_over_random_inits(activation):
    # For one hidden layer the expectation over inits of the empirical NTK and of f(x) f(x') is exactly the
    # analytic NTK and NNGP (the hidden pre-activations are exactly Gaussian); compare within 4.5 MC errors.
    x = torch.randn(4, 2)
    x = x / x.norm(dim=1, keepdim=True) * 2**0.5
    nngp, theta = infinite_width_kernels(x.numpy(), depth=1, activation=activation)
    n_inits = 200
    kernels, products = [], []
    for seed in range(n_inits):
        torch.manual_seed(seed)
        net = MLP(2, 1, width=64, depth=1, activation=activation, parametrization="ntk")
        kernels.append(empirical_ntk(net, x)[:, :, 0, 0].numpy())
        f = net(x).detach().numpy()[:, 0]
        products.append(np.outer(f, f))
    for draws, exact in ((np.array(kernels), theta), (np.array(products), nngp)):
        z = np.abs(draws.mean(0) - exact) / (draws.std(0, ddof=1) / np.sqrt(n_inits))
        assert z.max() < 4.5, (activation, z.max())


def test_analytic_kernels_validate_and_reduce_to_linear_kernel_at_first_layer():
    x = np.random.default_rng(0).standard_normal((3, 2))
    with pytest.raises(ValueError, match="activation must be one of"):
        infinite_width_kernels(x, activation="tanh")
    # ReLU arc-cosine identity: E[relu(u)^2] = Sigma / 2 on the diagonal
    nngp, _ = infinite_width_kernels(x, depth=1, sigma_b=0.0)
    np.testing.assert_allclose(np.diag(nngp), np.sum(x**2, 1) / 2 / 2, rtol=1e-12)


def test_standard_parametrization_is_the_plain_mlp_bit_for_bit():
    torch.manual_seed(3)
    field = MLPVectorField(2, width=8, depth=2)
    torch.manual_seed(3)
    reference = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))
    with torch.no_grad():
        reference[-1].weight.mul_(0.1)
        reference[-1].bias.zero_()
    y = torch.randn(4, 2)
    assert torch.equal(field(torch.tensor(0.0), y), reference(y))
    assert list(field.state_dict()) == [f"net.{k}" for k in reference.state_dict()]


def test_abc_table_mup_equals_gaussian_standard_at_base_width_and_scales_with_width():
    base = layer_scales("standard", [3, 64, 64])
    mup = layer_scales("mup", [3, 64, 64], base_width=64)
    assert all(abs(b.weight_std * b.weight_mult - m.weight_std * m.weight_mult) < 1e-15 for b, m in zip(base, mup, strict=True))
    assert [m.weight_lr for m in mup] == [1.0, 1.0, 1.0]
    wide = layer_scales("mup", [3, 256, 256], base_width=64)
    assert [s.weight_lr for s in wide] == [4.0, 1.0, 4.0] and wide[-1].weight_mult == 0.25
    adam = layer_scales("mup", [3, 256, 256], base_width=64, optimizer="adam")
    assert [s.weight_lr for s in adam] == [1.0, 0.25, 1.0]
    ntk = layer_scales("ntk", [3, 256, 256])
    assert ntk[1].weight_mult == 1 / 16 and ntk[1].weight_std == 1.0
    with pytest.raises(ValueError, match="parametrization must be one of"):
        layer_scales("xavier", [3, 4])


@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_preactivations_are_order_one_at_init_whatever_the_width(parametrization):
    # hidden pre-activations have O(1) coordinates at init in every parametrisation (the output may vanish)
    x = torch.randn(256, 3)
    sizes = []
    for width in (64, 1024):
        torch.manual_seed(0)
        net = MLP(3, 1, width=width, depth=2, parametrization=parametrization)
        with torch.no_grad():
            sizes.append([float(h.pow(2).mean().sqrt()) for h in net.preactivations(x)[:-1]])
    ratio = np.array(sizes[1]) / np.array(sizes[0])
    assert np.all((ratio > 0.8) & (ratio < 1.25)), ratio


def test_vector_field_parametrization_applies_multipliers_and_per_layer_rates():
    field = MLPVectorField(2, width=256, depth=1, parametrization="mup", base_width=64, final_scale=1.0)
    y = torch.randn(5, 2)
    first, last = field.net[0], field.net[2]
    expected = torch.tanh(y @ first.weight.T + first.bias) @ (last.weight / 4).T + last.bias
    torch.testing.assert_close(field(torch.tensor(0.0), y), expected)
    rates = {g["name"]: g["lr"] for g in field.parameter_groups(0.1)}
    assert rates["layer0.weight"] == pytest.approx(0.4) and rates["layer1.weight"] == pytest.approx(0.4)
    assert rates["layer1.bias"] == pytest.approx(0.1)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: MLP(2, 1, parametrization="xavier"), "parametrization=.xavier. is not valid"),
    (lambda: MLP(2, 1, base_width=0), "base_width must be >= 1"),
    (lambda: MLP(2, 1, activation="sine"), "activation=.sine. is not valid"),
])
def test_bad_network_settings_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_bad_probe_and_data_settings_are_named():
    from nde_lab.data import RegressionDataModule
    from nde_lab.theory import NTKProbe

    with pytest.raises(ValueError, match="every_n_epochs must be >= 1"):
        NTKProbe(every_n_epochs=0)
    with pytest.raises(ValueError, match="steps_per_epoch must be >= 1"):
        RegressionDataModule(steps_per_epoch=0)
    with pytest.raises(ValueError, match="target=.cosine. is not valid"):
        RegressionDataModule(target="cosine")
