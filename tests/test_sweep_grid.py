"""Sweep building blocks without running fits: grid parsing, dims, seed derivation, summaries, conclusions."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from nde_lab.errors import RecipeError
from nde_lab.sweep.conclusions import validate_conclusions
from nde_lab.sweep.grid import Grid, dim_names, find_seed_keys, parse_grid_option, split_values
from nde_lab.sweep.record import STATISTICS, across_seed_summary, build_record
from nde_lab.sweep.sbc import rank_statistics


def test_grid_option_parsing_keeps_brackets_and_rejects_malformed():
    assert parse_grid_option("model.init_args.lr=0.01,0.1") == ("model.init_args.lr", ["0.01", "0.1"])
    assert split_values("[1,2],[3,4],{a: 1, b: 2}") == ["[1,2]", "[3,4]", "{a: 1, b: 2}"]
    for bad in ("model.lr", "model.lr=", "=1,2", "model..lr=1", "a.b=1,1", "a.b=1,,2"):
        with pytest.raises(RecipeError):
            parse_grid_option(bad)


def test_dims_are_last_components_unless_they_clash():
    keys = ["model.init_args.vector_field.init_args.width", "model.init_args.lr", "data.init_args.lr",
            "data.init_args.seed"]
    assert dim_names(keys) == {keys[0]: "width", keys[1]: "model_init_args_lr", keys[2]: "data_init_args_lr",
                               keys[3]: "data_init_args_seed"}


def test_seeds_move_every_recipe_seed_together_and_names_are_deterministic():
    config = {"seed_everything": 3, "model": {"init_args": {"seed": 10, "sampling_seed": 5}},
              "data": {"init_args": {"seed": None, "n": 4}}}
    seed_keys = find_seed_keys(config)
    assert seed_keys == {"seed_everything": 3, "model.init_args.seed": 10, "data.init_args.seed": None}
    grid = Grid({"model.init_args.lr": ["0.1", "0.2"]}, 3, dict(seed_keys))
    points = grid.points("sw")
    assert len(points) == 6 and grid.shape == (2, 3)
    assert points[4].run_name == "sw-g001-s001"
    assert dict(points[4].overrides) == {"model.init_args.lr": "0.2", "seed_everything": "4",
                                         "model.init_args.seed": "11", "data.init_args.seed": "1"}
    assert grid.coords() == {"lr": [0.1, 0.2], "seed": [0, 1, 2]}
    # a swept seed key is the user's: --seeds leaves it alone
    swept = Grid({"data.init_args.seed": ["0", "1"]}, 2, dict(seed_keys))
    assert "data.init_args.seed" not in swept.seed_keys
    with pytest.raises(RecipeError, match="empty sweep"):
        Grid({}, 1, {})


def test_across_seed_summary_equals_numpy_and_ignores_failed_runs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5))
    x[1, 2] = np.nan  # a failed run
    da = xr.DataArray(x, dims=("width", "seed"), coords={"width": [8, 16, 32]})
    s = across_seed_summary(da)
    assert list(s["statistic"].values) == STATISTICS
    for i in range(3):
        v = x[i][np.isfinite(x[i])]
        se = v.std(ddof=1) / np.sqrt(v.size)
        t = stats.t.ppf(0.975, v.size - 1)
        expected = [v.size, v.mean(), v.std(ddof=1), se, v.mean() - t * se, v.mean() + t * se, v.min(), v.max()]
        np.testing.assert_allclose(s.isel(width=i).values, expected, rtol=1e-12)
    lo, hi = stats.t.interval(0.95, 4, loc=x[0].mean(), scale=stats.sem(x[0]))
    np.testing.assert_allclose(s.isel(width=0).sel(statistic=["ci_low", "ci_high"]).values, [lo, hi], rtol=1e-12)


def test_record_marks_missing_points_and_keeps_scalars_per_point():
    coords = {"lr": [0.1, 0.2], "seed": [0, 1]}
    rows = [{"index": (0, 0), "run": {"run_name": "a", "run_path": "/s/a", "status": "complete"}, "scalars": {"m": 1.0}},
            {"index": (1, 1), "run": {"run_name": "b", "status": "failed", "failure": "boom"}, "scalars": {}}]
    groups = build_record({}, coords, rows)
    runs, scalars = groups["runs"], groups["scalars"]
    assert runs["status"].values.tolist() == [["complete", "missing"], ["missing", "failed"]]
    assert runs["failure"].sel(lr=0.2, seed=1).item() == "boom"
    assert float(scalars["m"].sel(lr=0.1, seed=0)) == 1.0 and np.isnan(scalars["m"].sel(lr=0.2, seed=1))
    assert groups["summary"]["m"].dims == ("lr", "statistic")


def test_conclusion_specs_are_validated_with_their_key():
    ok = {"theta": {"parameter": "theta", "tolerance": 0.1},
          "p": {"prob": {"var": "y", "op": ">", "value": 1.0}, "n": 100}}
    assert validate_conclusions(ok) == ok
    for bad, match in [({"x": {"metric": "a", "parameter": "b"}}, "conclusions.x"),
                       ({"x": {"metric": "a", "tolerance": -1}}, "conclusions.x.tolerance"),
                       ({"x": {"prob": {"var": "y", "op": "!=", "value": 1}}}, "conclusions.x.prob"),
                       ({"x": "train_loss"}, "conclusions.x")]:
        with pytest.raises(RecipeError, match=match):
            validate_conclusions(bad)


def test_rank_uniformity_chi_square_matches_scipy():
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 10, size=(200, 2))
    ranks[:, 1] = np.where(rng.random(200) < 0.5, 0, 9)  # U-shaped: an overconfident posterior
    out = rank_statistics(ranks, draws=9, bins=5)
    counts = np.stack([np.bincount(r // 2, minlength=5) for r in ranks.T])
    np.testing.assert_array_equal(out["counts"], counts)
    np.testing.assert_allclose(out["p_value"], [stats.chisquare(c).pvalue for c in counts], rtol=1e-12)
    assert out["p_value"][0] > 0.01 > out["p_value"][1]
