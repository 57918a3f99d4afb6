"""Width phenomena over grids of single-point recipe fits (a plain loop over `RecipePoint.fit`, the test
harness; `nde-lab sweep` runs the same grids as runs): NTK convergence, lazy vs rich, muP transfer."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from cli import RECIPES

from nde_lab.theory import optimum_shift, width_slopes
from nde_lab.theory.points import RecipePoint

WIDTH = "model.init_args.network.init_args.width"
PARAM = "model.init_args.network.init_args.parametrization"


def _grid(point: RecipePoint, dims: dict[str, list], read, keys: dict[str, str]) -> xr.DataArray:
    """Fit every point of the grid `dims` (seed handled as `fit(seed=...)`) and stack `read(groups)`."""
    names = list(dims)
    shape = [len(dims[n]) for n in names]
    values = np.empty(shape)
    for index in np.ndindex(*shape):
        setting = {n: dims[n][i] for n, i in zip(names, index, strict=True)}
        overrides = {keys[n]: v for n, v in setting.items() if n != "seed"}
        values[index] = read(point.fit(overrides, seed=setting.get("seed")))
    return xr.DataArray(values, dims=names, coords=dims)


@pytest.mark.slow
def test_ntk_converges_to_the_analytic_kernel_like_width_to_the_minus_half():
    point = RecipePoint(RECIPES / "theory_ntk_width.yaml")
    error = _grid(point, {"width": [64, 256, 1024, 4096], "seed": [0, 1, 2, 3]},
                  lambda g: float(g["ntk"]["analytic_error"].sel(epoch=0)), {"width": WIDTH})
    slope = float(width_slopes(error)["slope"])
    assert -0.65 <= slope <= -0.35, (slope, error.mean("seed").values)


@pytest.mark.slow
def test_lazy_under_ntk_rich_under_mup_and_mean_field():
    # lr per parametrisation: each trains to a small loss in 200 GD steps at every width
    point = RecipePoint(RECIPES / "theory_width_regimes.yaml")
    widths = [64, 256, 1024]
    results = {}
    for parametrization, lr in (("ntk", 0.5), ("mup", 0.25), ("mean_field", 0.5)):
        def read(g):
            return (float(g["weight_change"]["total_relative_change"][-1]), float(g["ntk"]["drift"][-1]),
                    float(g["linearized"]["relative_function_distance"][-1]))

        rows = [read(point.fit({WIDTH: w, PARAM: parametrization, "model.init_args.lr": lr})) for w in widths]
        data = xr.Dataset({name: ("width", [r[i] for r in rows]) for i, name in
                           enumerate(["weight_change", "ntk_drift", "linearization_gap"])}, coords={"width": widths})
        results[parametrization] = data
    ntk = {k: float(width_slopes(results["ntk"][k])["slope"]) for k in ("weight_change", "ntk_drift")}
    # Lazy: theory -1/2 for both; three widths and one seed leave finite-width and sampling error of ~0.2.
    assert -0.8 <= ntk["weight_change"] <= -0.3 and -0.8 <= ntk["ntk_drift"] <= -0.3, ntk
    # ... and the network stays close to its linearisation, closer as width grows
    gap = results["ntk"]["linearization_gap"].values
    assert gap[-1] < 0.05 and gap[-1] < gap[0]
    for rich in ("mup", "mean_field"):
        for key in ("weight_change", "ntk_drift"):
            slope = float(width_slopes(results[rich][key])["slope"])
            # Rich: order one, i.e. no decay (theory 0; finite-width corrections are O(width^-1/2), a
            # slope of at most ~0.3 in magnitude over 64..1024), and a change of order one at the widest.
            assert abs(slope) <= 0.3 and float(results[rich][key][-1]) > 0.3, (rich, key, slope, results[rich][key].values)


@pytest.mark.slow
def test_mup_transfers_the_optimal_learning_rate_and_standard_does_not():
    point = RecipePoint(RECIPES / "theory_mup_transfer.yaml")
    lrs = [float(2.0**k) for k in range(-8, 0)]
    loss = _grid(point, {"parametrization": ["mup", "standard"], "width": [64, 256, 1024], "lr": lrs},
                 lambda g: float(g["evaluation"]["train_loss"]),
                 {"parametrization": PARAM, "width": WIDTH, "lr": "model.init_args.lr"})
    shift = optimum_shift(loss)
    assert int(shift["shift_steps"].sel(parametrization="mup")) <= 1, shift["optimal_lr"].values
    assert int(shift["shift_steps"].sel(parametrization="standard")) >= 2, shift["optimal_lr"].values
    # the optimum moves towards smaller rates as the standard-parametrised net widens
    standard = shift["optimal_lr"].sel(parametrization="standard").values
    assert standard[-1] < standard[0]


def test_coordinate_check_is_stored_with_step_and_layer_dims():
    point = RecipePoint(RECIPES / "theory_mup_transfer.yaml", ["--trainer.max_epochs", "1"])
    sizes = {}
    for parametrization in ("mup", "standard"):
        for width in (64, 1024):
            # zero-initialised readout (as the mup package recommends) so every width starts from f = 0
            check = point.fit({WIDTH: width, PARAM: parametrization, "model.init_args.lr": 0.03,
                               "model.init_args.network.init_args.final_scale": 0.0})["coordinate_check"]
            assert check["update_size"].dims == ("step", "layer") and list(check["step"].values) == [0, 1, 2, 3]
            assert float(check["update_size"].isel(step=0).max()) == 0.0
            sizes[parametrization, width] = float(check["update_size"].isel(step=-1, layer=-1))
    # the output's update after 3 steps: width-stable under muP, growing with width under standard
    assert 0.5 < sizes["mup", 1024] / sizes["mup", 64] < 2.0, sizes
    assert sizes["standard", 1024] / sizes["standard", 64] > 4.0, sizes
