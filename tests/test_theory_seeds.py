"""Seed robustness and pruning: distances across seeds, Hungarian alignment, loss barriers, pruning curves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from cli import RECIPES

from nde_lab.data import regression_data
from nde_lab.dynamics import MLP
from nde_lab.theory import (
    align_hidden_units,
    function_distances,
    loss_barrier,
    pruning_curve,
    seed_robustness,
)
from nde_lab.theory.curvature import half_mse
from nde_lab.theory.seeds import interpolate, parameter_distance


def test_alignment_permutes_hidden_units_without_changing_the_function_and_recovers_a_permutation():
    torch.manual_seed(0)
    a = MLP(2, 1, width=16, depth=2, activation="tanh")
    b = MLP(2, 1, width=16, depth=2, activation="tanh")
    x = torch.randn(20, 2)
    aligned = align_hidden_units(a, b)
    torch.testing.assert_close(aligned(x), b(x), rtol=1e-5, atol=1e-6)
    assert parameter_distance(a, aligned) < parameter_distance(a, b)
    # a permuted copy of a is aligned back onto a exactly
    perm = torch.randperm(16)
    c = MLP(2, 1, width=16, depth=2, activation="tanh")
    c.load_state_dict(a.state_dict())
    with torch.no_grad():
        c.net[0].weight.copy_(c.net[0].weight[perm])
        c.net[0].bias.copy_(c.net[0].bias[perm])
        c.net[1].weight.copy_(c.net[1].weight[:, perm])
    assert parameter_distance(a, c) > 1.0
    assert parameter_distance(a, align_hidden_units(a, c)) < 1e-6


def test_function_distances_are_a_symmetric_matrix_with_zero_diagonal():
    f = xr.DataArray(np.random.default_rng(0).standard_normal((3, 10, 1)), dims=("seed", "point", "output"),
                     coords={"seed": [0, 1, 2]})
    d = function_distances(f)
    assert d.dims == ("seed", "seed_other")
    np.testing.assert_allclose(d.values, d.values.T)
    np.testing.assert_array_equal(np.diag(d.values), 0.0)
    assert float(d.sel(seed=0, seed_other=1)) == pytest.approx(float(np.sqrt(((f[0] - f[1]) ** 2).mean())))


def test_seed_robustness_over_seeds_of_the_recipe():
    from nde_lab.theory.points import RecipePoint

    point = RecipePoint(RECIPES / "theory_seed_robustness.yaml", ["--trainer.max_epochs", "10"])
    networks, near_zero, functions = {}, {}, []
    for seed in (0, 1, 2):
        groups = point.fit(seed=seed)
        networks[seed] = point.last_model.network
        near_zero[seed] = groups["hessian_final"].attrs["n_near_zero"]  # counted against dense eigvalsh in test_theory_curvature
        functions.append(groups["function"]["f"])
        pruning = groups["pruning"]
        assert pruning["loss"].sel(amount=0.0) == pytest.approx(float(groups["evaluation"]["train_loss"]), rel=1e-5)
        np.testing.assert_allclose(pruning["fraction_kept"], 1 - pruning["amount"], atol=0.02)
        assert float(pruning["loss"].sel(amount=0.95)) > float(pruning["loss"].sel(amount=0.0))
    x, y = regression_data(64 + 64, 2, target="sine", dtype=torch.float32)
    x_train, y_train, grid = x[:64], y[:64], x[64:]
    ds = seed_robustness(networks, x_train, y_train, grid)
    for name in ("function_distance", "parameter_distance", "aligned_parameter_distance", "loss_barrier"):
        assert ds[name].dims == ("seed", "seed_other")
        np.testing.assert_array_equal(np.diag(ds[name].values), 0.0)
    np.testing.assert_allclose(ds["function_distance"], ds["function_distance"].T, rtol=1e-12)
    off = ~np.eye(3, dtype=bool)
    assert np.all(ds["aligned_parameter_distance"].values[off] < ds["parameter_distance"].values[off])
    assert np.all(ds["loss_barrier"].values >= 0)
    # the stored function snapshots give the same distances as the live networks
    stacked = xr.concat(functions, dim="seed").assign_coords(seed=[0, 1, 2])
    np.testing.assert_allclose(function_distances(stacked), ds["function_distance"], rtol=1e-5, atol=1e-7)
    # the barrier equals a direct evaluation of the loss on the path at its argmax
    aligned = align_hidden_units(networks[0], networks[1])
    path = loss_barrier(networks[0], aligned, x_train, y_train)
    alpha = path.attrs["argmax_alpha"]
    with torch.no_grad():
        direct = float(half_mse(interpolate(networks[0], aligned, alpha)(x_train), y_train))
        ends = [float(half_mse(n(x_train), y_train)) for n in (networks[0], aligned)]
    assert path.attrs["barrier"] == pytest.approx(direct - ((1 - alpha) * ends[0] + alpha * ends[1]), rel=1e-6, abs=1e-9)
    assert float(ds["loss_barrier"].sel(seed=0, seed_other=1)) == pytest.approx(path.attrs["barrier"], rel=1e-6)


def test_pruning_curve_validates_amounts():
    net = MLP(2, 1, width=8)
    x, y = regression_data(8, 2)
    with pytest.raises(ValueError, match=r"amounts must lie in \[0, 1\)"):
        pruning_curve(net, x, y, amounts=[0.5, 1.0])
