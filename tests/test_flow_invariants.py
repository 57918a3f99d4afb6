"""One invariants test over every discrete flow type (shapes, gradients, inverse, log-det, save/reload), plus errors."""

from __future__ import annotations

import io
import math

import pytest
import torch

from nde_lab.errors import DataError, RecipeError
from nde_lab.flows import (
    AffineAutoregressive,
    AffineCoupling,
    DiscreteFlow,
    NonFiniteLossError,
    Permute,
    SplineAutoregressive,
    SplineCoupling,
    check_finite_loss,
)

DIM, CONTEXT, N = 3, 2, 4

LAYERS = {
    "affine_coupling": lambda: AffineCoupling(hidden=[8, 8]),
    "spline_coupling": lambda: SplineCoupling(hidden=[8, 8], bins=4, bound=3.0),
    "affine_maf": lambda: AffineAutoregressive(hidden=[8, 8], direction="maf"),
    "affine_iaf": lambda: AffineAutoregressive(hidden=[8, 8], direction="iaf"),
    "spline_maf": lambda: SplineAutoregressive(hidden=[8, 8], bins=4, bound=3.0, direction="maf"),
    "spline_iaf": lambda: SplineAutoregressive(hidden=[8, 8], bins=4, bound=3.0, direction="iaf"),
}
CASES = [(name, c) for name in LAYERS for c in (0, CONTEXT)]


def _build(name: str, context_dim: int) -> DiscreteFlow:
    # two layers of the type around a random permutation, trainable base: every parameter kind
    layers = [LAYERS[name](), Permute(kind="random", seed=3), LAYERS[name]()]
    flow = DiscreteFlow(DIM, layers, context_dim=context_dim, trainable_base=True)
    with torch.no_grad():  # move off the identity-ish initialisation so the checks are not trivial
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow


@pytest.mark.parametrize(("name", "context_dim"), CASES, ids=[f"{n}-ctx{c}" for n, c in CASES])
def test_flow_invariants(float64, name: str, context_dim: int) -> None:
    flow = _build(name, context_dim)
    x = torch.randn(N, DIM)
    ctx = torch.randn(N, context_dim) if context_dim else None

    # shapes
    lp = flow.log_prob(x, ctx)
    assert lp.shape == (N,) and torch.isfinite(lp).all()
    draws = flow.sample(5, context=None if ctx is None else ctx[0], generator=torch.Generator().manual_seed(0))
    assert draws.shape == (5, DIM)

    # a gradient reaches every parameter
    flow.zero_grad()
    lp.sum().backward()
    for pname, p in flow.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {pname}"

    # inverse round trip, both ways
    with torch.no_grad():
        z, ld_inv = flow.inverse_and_log_det(x, ctx)
        x_back, ld_fwd = flow.forward_and_log_det(z, ctx)
        z2 = torch.randn(N, DIM)
        z_back, _ = flow.inverse_and_log_det(flow.forward_and_log_det(z2, ctx)[0], ctx)
    torch.testing.assert_close(x_back, x, atol=1e-4, rtol=0)
    torch.testing.assert_close(z_back, z2, atol=1e-4, rtol=0)
    torch.testing.assert_close(ld_fwd, -ld_inv, atol=1e-6, rtol=0)

    # log|det J| against slogdet of the autograd Jacobian of x -> z, point by point
    for i in range(N):
        c_i = None if ctx is None else ctx[i : i + 1]
        jac = torch.autograd.functional.jacobian(lambda v, c=c_i: flow.inverse_and_log_det(v[None], c)[0][0], x[i])
        sign, logabsdet = torch.linalg.slogdet(jac)
        assert sign != 0
        assert abs(float(logabsdet - ld_inv[i])) < 1e-3

    # the same input tensor again, after a parameter change: no stale Pyro cache, and backprop works twice
    before = flow.log_prob(x, ctx).detach()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05)
    again = flow.log_prob(x, ctx)
    assert not torch.allclose(again, before)
    torch.testing.assert_close(again, flow.log_prob(x.clone(), ctx), atol=1e-10, rtol=0)
    again.sum().backward()
    flow.log_prob(x, ctx).sum().backward()

    # save and reload: a fresh build (other random init) given the state dict answers identically
    buffer = io.BytesIO()
    torch.save(flow.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)
    fresh = DiscreteFlow(DIM, [LAYERS[name](), Permute(kind="random", seed=3), LAYERS[name]()],
                         context_dim=context_dim, trainable_base=True)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(fresh.log_prob(x, ctx), flow.log_prob(x, ctx).detach(), atol=1e-10, rtol=0)


def test_permutations_are_volume_preserving_and_reversible(float64) -> None:
    flow = DiscreteFlow(4, [Permute(kind="reverse"), Permute(kind="random", seed=1)])
    x = torch.randn(6, 4)
    z, ld = flow.inverse_and_log_det(x)
    assert torch.equal(ld, torch.zeros(6))
    torch.testing.assert_close(flow.forward_and_log_det(z)[0], x)
    # with no parameters the density is the standard normal at the permuted point
    expected = -0.5 * (x**2).sum(-1) - 2 * math.log(2 * math.pi)
    torch.testing.assert_close(flow.log_prob(x), expected)


# ---- errors: each validation branch names what is wrong -------------------------------------------
def test_dimension_mismatch_is_named() -> None:
    flow = DiscreteFlow(2, [AffineCoupling(hidden=[4])])
    with pytest.raises(DataError, match=r"data dimension mismatch: the data has 3 coordinates .* dim=2"):
        flow.log_prob(torch.randn(5, 3))
    with pytest.raises(DataError, match=r"expects data of shape \(n, 2\)"):
        flow.log_prob(torch.randn(5))


def test_missing_context_is_named() -> None:
    flow = DiscreteFlow(2, [AffineCoupling(hidden=[4])], context_dim=3)
    with pytest.raises(DataError, match=r"missing context: .*context_dim=3.*\(n, 3\)"):
        flow.log_prob(torch.randn(5, 2))
    with pytest.raises(DataError, match=r"missing context"):
        flow.sample(4)
    with pytest.raises(DataError, match=r"context has shape \(5, 2\) but DiscreteFlow needs \(5, 3\)"):
        flow.log_prob(torch.randn(5, 2), torch.randn(5, 2))
    plain = DiscreteFlow(2, [AffineCoupling(hidden=[4])])
    with pytest.raises(DataError, match=r"unconditional \(context_dim=0\) but a context was given"):
        plain.log_prob(torch.randn(5, 2), torch.randn(5, 3))


def test_non_finite_loss_is_named() -> None:
    with pytest.raises(NonFiniteLossError, match=r"negative log-likelihood is non-finite \(nan\) at epoch 3"):
        check_finite_loss(torch.tensor(float("nan")), name="negative log-likelihood", where="epoch 3")
    check_finite_loss(torch.tensor(1.0), name="x", where="y")  # finite: no error


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: DiscreteFlow(2, []), r"layers is empty"),
        (lambda: DiscreteFlow(2, ["spline"]), r"layers\[0\] is a str, not a flow layer"),
        (lambda: DiscreteFlow(1, [AffineCoupling()]), r"AffineCoupling splits the data in two and needs dim >= 2"),
        (lambda: AffineAutoregressive(direction="up"), r"direction='up' is not valid; must be one of 'maf'"),
        (lambda: SplineCoupling(bins=1), r"needs bins >= 2 and bound > 0"),
        (lambda: AffineCoupling(hidden=[]), r"hidden must be a non-empty list"),
        (lambda: Permute(kind="sorted"), r"Permute.kind='sorted' is not valid"),
    ],
)
def test_recipe_errors_are_named(make, message: str) -> None:
    with pytest.raises(RecipeError, match=message):
        make()
