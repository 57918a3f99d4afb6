"""The `nde-lab` command end to end on the neural ODE recipes, and the errors a recipe can cause."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
import xarray as xr
import zarr
from cli import RECIPES, run_cli, runs_in
from figures_check import check_figures

import nde_lab
import nde_lab.errors

TINY = ("--trainer.max_epochs", "1", "--data.init_args.batches_per_epoch", "2")


def _fit(recipe: str, store, *extra: str, budget: tuple[str, ...] = TINY):
    return run_cli("fit", "--config", str(RECIPES / recipe), *budget, *extra, store=store)


# the spiral on a tiny budget (its full budget has its own test below); the hare-lynx recipe at its full
# budget (~40 s), which also checks README's figure for it
@pytest.mark.parametrize("recipe", ["spiral_node.yaml", pytest.param("lotka_volterra_node.yaml", marks=pytest.mark.slow)])
def test_recipe_runs_through_the_cli_and_lands_in_the_store(tmp_path, recipe):
    full = recipe == "lotka_volterra_node.yaml"
    out = _fit(recipe, tmp_path, budget=() if full else TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    run = nde_lab.open_run(tmp_path / recipe.removesuffix(".yaml") / "latest")
    if full:
        check_figures("lotka_volterra_node", run)
    assert run.status == "complete" and run.attrs["model_family"] == "neural_ode"
    assert set(run.tree.children) >= {"observed_data", "trajectories", "metrics", "solver_stats"}
    assert run.trajectories["y"].dims == ("time", "state")
    assert run.trajectories["time"].values[-1] > run.observed["time"].values[-1]  # extrapolation horizon
    assert int(run.tree["solver_stats"]["nfe"]) > 0
    assert "train_loss" in run.metrics and "val_mae" in run.metrics
    assert "seed_everything: 0" in run.attrs["recipe"] and (run.path / "config.yaml").exists()
    # the restored model predicts what was stored, on the stored grid
    predicted = run.predict(run.trajectories["time"].values)
    np.testing.assert_allclose(predicted["y"].values, run.trajectories["y"].values, rtol=1e-5, atol=1e-5)
    assert list(predicted["state"].values) == list(run.observed["state"].values)
    table = nde_lab.list_runs(tmp_path)
    assert len(table) == 1 and np.isfinite(table["final_loss"][0])


def test_same_recipe_and_seed_give_identical_trajectories(tmp_path):
    stores = [tmp_path / "a", tmp_path / "b"]
    for store in stores:
        assert _fit("spiral_node.yaml", store).returncode == 0
    first, second = (nde_lab.open_run(s / "spiral_node" / "latest").trajectories.load() for s in stores)
    xr.testing.assert_identical(first, second)


def test_store_from_environment_and_experiment_and_run_name_from_flags(tmp_path):
    out = run_cli("fit", "--config", str(RECIPES / "spiral_node.yaml"), *TINY, "--experiment", "mine",
                  "--run_name", "r1", store=None, env_store=tmp_path / "env_store", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert nde_lab.open_run(tmp_path / "env_store" / "mine" / "r1").status == "complete"
    assert not (tmp_path / "store").exists()


def test_print_config_shows_the_resolved_recipe(tmp_path):
    out = run_cli("fit", "--config", str(RECIPES / "spiral_node.yaml"), "--print_config", store=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "class_path: nde_lab.dynamics.MLPVectorField" in out.stdout and "method: rk4" in out.stdout
    assert runs_in(tmp_path) == []


# ---- errors: clear message, exit status, and no run that looks complete ------------------------------
def _write(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _recipe_with(tmp_path, old: str, new: str):
    text = (RECIPES / "spiral_node.yaml").read_text()
    assert old in text
    return _write(tmp_path, text.replace(old, new))


@pytest.mark.parametrize(
    "old,new,message",
    [
        ("    solver: {method: rk4", "    solvr: {method: rk4", r"solvr.method' is not accepted"),
        ("width: 50", "width: fifty", r"width.*fifty|fifty.*width"),
    ],
)
def test_recipe_typo_or_wrong_type_exits_2_naming_key_and_creates_no_run(tmp_path, old, new, message):
    out = run_cli("fit", "--config", str(_recipe_with(tmp_path, old, new)), store=tmp_path / "s")
    assert out.returncode == 2, out.stderr[-2000:]
    assert re.search(message, out.stderr, flags=re.S), out.stderr[-2000:]
    assert runs_in(tmp_path / "s") == []


def test_wrong_type_on_the_command_line_exits_2(tmp_path):
    out = run_cli("fit", "--config", str(RECIPES / "spiral_node.yaml"), "--model.init_args.output_points", "many", store=tmp_path / "s")
    assert out.returncode == 2 and "output_points" in out.stderr and "many" in out.stderr
    assert runs_in(tmp_path / "s") == []


def test_unknown_solver_method_lists_the_valid_ones(tmp_path):
    out = run_cli("fit", "--config", str(_recipe_with(tmp_path, "method: rk4", "method: rk45")), store=tmp_path / "s")
    assert out.returncode == 2
    assert "rk45" in out.stderr and "dopri5" in out.stderr and "rk4" in out.stderr


@pytest.mark.parametrize(
    "csv,message",
    [
        (None, r"data file '.*missing.csv' does not exist"),
        ("time,a,b\n0,1,2\n1,nan,3\n2,1,1\n", r"value is NaN or infinite at row 1, column 0"),
        ("time,a,b\n0,1,2\n2,2,3\n1,1,1\n", r"column 'time' must be strictly increasing"),
    ],
)
def test_bad_data_files_exit_2_naming_the_file(tmp_path, csv, message):
    data = tmp_path / ("missing.csv" if csv is None else "series.csv")
    if csv is not None:
        data.write_text(csv)
    recipe = _recipe_with(tmp_path, "source: {class_path: nde_lab.data.Spiral}",
                          f"source: {{class_path: nde_lab.data.SeriesFile, init_args: {{path: '{data}'}}}}")
    out = run_cli("fit", "--config", str(recipe), *TINY, store=tmp_path / "s")
    assert out.returncode == 2, out.stderr[-2000:]
    assert re.search(message, out.stderr), out.stderr[-2000:]
    assert str(data) in out.stderr
    assert runs_in(tmp_path / "s") == []


@pytest.mark.parametrize("name", ["../x", "a/b"])
def test_run_names_that_escape_the_store_are_refused(tmp_path, name):
    out = _fit("spiral_node.yaml", tmp_path / "s", "--run_name", name)
    assert out.returncode == 2 and "is not a valid name" in out.stderr
    assert not (tmp_path / "x").exists() and runs_in(tmp_path / "s") == []


def test_a_vector_field_that_blows_up_gives_a_failed_run_with_its_reason(tmp_path):
    recipe = _recipe_with(
        tmp_path,
        "      class_path: nde_lab.dynamics.MLPVectorField\n      init_args: {dim: 2, width: 50, depth: 1, activation: tanh, input_map: cube}",
        "      class_path: user_fields.Exploding\n      init_args: {dim: 2}",
    )
    store = tmp_path / "s"
    out = run_cli("fit", "--config", str(recipe), *TINY, "--allow_import", "user_fields", store=store)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "SolverError" in out.stderr and "non-finite state" in out.stderr and "method='rk4'" in out.stderr
    (run_dir,) = runs_in(store)
    assert not run_dir.name.startswith(".")
    attrs = zarr.open_group(str(run_dir / "run.zarr"), mode="r").attrs
    assert attrs["status"] == "failed" and "non-finite state" in attrs["failure"]
    with pytest.raises(nde_lab.errors.RunNotReadyError, match="failed"):
        nde_lab.open_run(run_dir)


@pytest.mark.slow
def test_spiral_recipe_at_full_budget_reaches_the_readme_mae(tmp_path):
    out = run_cli("fit", "--config", str(RECIPES / "spiral_node.yaml"), store=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = nde_lab.open_run(tmp_path / "spiral_node" / "latest")
    mae = float(run.tree["solver_stats"]["full_series_mae"])
    observed = run.observed["y"].values
    baseline = float(np.abs(observed - observed.mean(axis=0)).mean())  # predicting the mean: 0.53
    assert mae < SPIRAL_MAE_README, (mae, baseline)
    assert mae < baseline / 10
    check_figures("spiral_node", run)


#: The figure README states for the spiral recipe (full-trajectory MAE).
SPIRAL_MAE_README = 0.06


def test_evaluation_subcommands_from_a_checkpoint_land_as_runs(tmp_path):
    assert _fit("spiral_node.yaml", tmp_path, "--run_name", "trained").returncode == 0
    trained = nde_lab.open_run(tmp_path / "spiral_node" / "trained")
    checkpoint = trained.path / "checkpoints" / "last.ckpt"
    for subcommand in ("validate", "test", "predict"):
        out = run_cli(subcommand, "--config", str(RECIPES / "spiral_node.yaml"), "--ckpt_path", str(checkpoint),
                      "--run_name", subcommand, store=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        run = nde_lab.open_run(tmp_path / "spiral_node" / subcommand)
        assert run.attrs["subcommand"] == subcommand
        # the evaluated model is the trained one: the same stored trajectory
        np.testing.assert_allclose(run.trajectories["y"].values, trained.trajectories["y"].values, rtol=1e-6)
        if subcommand != "predict":
            metric = "val_mae" if subcommand == "validate" else "test_mae"
            np.testing.assert_allclose(float(run.metrics[metric][-1]), float(trained.metrics["val_mae"][-1]), rtol=1e-5)
