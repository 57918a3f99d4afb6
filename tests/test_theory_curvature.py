"""Hessian probes against the dense autograd Hessian; edge of stability through the recipe (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli import RECIPES

from nde_lab.data import regression_data
from nde_lab.dynamics import MLP
from nde_lab.theory import HessianOperator, hessian_spectrum, hutchinson_trace, lanczos_top, slq
from nde_lab.theory.analysis import edge_of_stability_summary


@pytest.fixture
def small_problem(float64):
    x, y = regression_data(32, 2, target="teacher", dtype=torch.float64)
    net = MLP(2, 1, width=12, depth=2, activation="tanh")  # 205 parameters
    for _ in range(50):  # move off init so the spectrum has negative and positive parts
        net.zero_grad()
        (0.5 * ((net(x) - y) ** 2).mean()).backward()
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.2 * p.grad
    op = HessianOperator(net, x, y)
    dense = torch.autograd.functional.hessian(op.objective, op.theta.detach()).numpy()
    return net, x, y, op, dense


def test_lanczos_top5_matches_dense_eigvalsh(small_problem):
    _, _, _, op, dense = small_problem
    np.testing.assert_allclose(op.dense(), dense, rtol=0, atol=1e-12)  # HVPs are exact
    top, residual = lanczos_top(op, 5)
    exact = np.linalg.eigvalsh(dense)[::-1][:5]
    np.testing.assert_allclose(top, exact, rtol=1e-6)
    assert np.all(residual < 1e-6 * exact[0])


def test_slq_density_integrates_to_one_and_its_mean_is_trace_over_n(small_problem):
    _, _, _, op, dense = small_problem
    density = slq(op, n_probes=20, steps=30, seed=1)
    assert abs(density.attrs["integral"] - 1) < 1e-3
    np.testing.assert_allclose(density["weights"].sum("node"), 1.0, atol=1e-10)  # each quadrature is a probability
    exact = np.trace(dense) / dense.shape[0]
    assert abs(density.attrs["mean"] - exact) < 4 * density.attrs["mean_mcse"]
    # Lanczos with enough steps finds the extreme eigenvalues as nodes
    eig = np.linalg.eigvalsh(dense)
    assert abs(np.nanmax(density["nodes"].values) - eig[-1]) < 1e-6 * abs(eig[-1])
    trace, err = hutchinson_trace(op, 100, seed=2)
    assert abs(trace - np.trace(dense)) < 4 * err


def test_hessian_spectrum_dataset_names_and_near_zero_count(small_problem):
    net, x, y, _, dense = small_problem
    ds = hessian_spectrum(net, x, y, k=3, n_probes=4, slq_steps=20, hutchinson_probes=20)
    assert ds["top_eigenvalues"].dims == ("eigen_index",) and ds["density"].dims == ("eigenvalue",)
    eig = np.linalg.eigvalsh(dense)
    assert ds.attrs["n_near_zero"] == int(np.sum(np.abs(eig) <= 1e-6 * eig.max()))
    with pytest.raises(ValueError, match="k must be in"):
        lanczos_top(HessianOperator(net, x, y), 0)


@pytest.mark.slow
def test_edge_of_stability_sharpness_rises_to_two_over_eta(tmp_path):
    from nde_lab.theory.points import RecipePoint

    point = RecipePoint(RECIPES / "theory_edge_of_stability.yaml")
    for lr in (0.3, 0.4):
        groups = point.fit({"model.init_args.lr": lr})
        sharpness = groups["hessian"]["sharpness"]
        summary = edge_of_stability_summary(sharpness, lr)
        assert groups["hessian"].attrs["edge"] == pytest.approx(2 / lr)
        assert float(summary["initial"]) < 0.85 * 2 / lr  # it rises ...
        assert float(summary["max_relative_deviation"]) <= 0.15, sharpness.values  # ... and hovers at 2/eta
