"""`nde-lab runs`, `show` and `plot` on one tiny run of every model family; PNGs that show something."""

from __future__ import annotations

import numpy as np
import pytest
from cli import run_cli
from matplotlib.image import imread
from ux_runs import TINY_FITS, build_store

import nde_lab
from nde_lab.commands import main as nde_lab_main

#: experiment -> (default kind, number of axes it draws)
DEFAULT_PICTURE = {
    "spiral_node": ("trajectories", 2),        # one panel per state
    "ou_fit": ("trajectories", 1),
    "gbm_latent_sde": ("trajectories", 4),     # one panel per held-out path (at most 4)
    "lotka_volterra_bayes": ("trajectories", 2),
    "bayes_neural_ode": ("trajectories", 2),
    "rugged_regression_svi": ("predictive", 1),
    "flow_8gaussians": ("density", 3),         # density, colour bar, samples
    "cnf_checkerboard": ("density", 3),
    "vae_digits": ("images", 3),               # originals, reconstructions, samples
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("ux_store")
    results = build_store(root)
    for name, (code, err) in results.items():
        assert code == 0, (name, err[-3000:])
        # --quiet: no progress lines, the summary is one line naming the run
        assert "nde-lab: epoch" not in err and err.strip().splitlines()[-1].startswith("nde-lab: run complete: "), err
    return root


def _check_png(path, min_colours: int = 6) -> None:
    assert path.stat().st_size > 8000, path.stat().st_size
    pixels = imread(path)[..., :3].reshape(-1, 3)
    colours = np.unique((pixels * 255).round().astype(np.uint8), axis=0)
    assert len(colours) >= min_colours, len(colours)


def test_runs_lists_every_family_with_its_headline_metric(store, capsys):
    out = run_cli("runs", store=store)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:5] == ["experiment", "run", "status", "created", "family"]
    assert len(lines) == 1 + len(TINY_FITS) and all("..." not in line for line in lines)
    table = nde_lab.list_runs(store)
    assert table["value"].notna().all() and (table["metric"] != "").all(), table[["experiment", "metric", "value"]]
    assert table["final_loss"].notna().all(), table[["experiment", "final_loss"]]
    row = table.set_index("experiment")
    assert row.loc["ou_fit", "metric"] == "train NLL" and row.loc["lotka_volterra_bayes", "metric"] == "Pareto k"
    assert row.loc["spiral_node", "metric"] == "full-series MAE"
    # --experiment filters; the table names the same headline as list_runs
    assert nde_lab_main(["runs", "--experiment", "flow_8gaussians", "--store", str(store)]) == 0
    shown = capsys.readouterr().out
    assert len(shown.splitlines()) == 2 and "val NLL (nats)" in shown


@pytest.mark.parametrize("experiment", list(TINY_FITS))
def test_show_and_plot_every_family(store, experiment, tmp_path, capsys):
    assert nde_lab_main(["show", f"{experiment}/latest", "--store", str(store)]) == 0
    shown = capsys.readouterr().out
    run = nde_lab.open_run(store / experiment / "latest")
    assert f"run        {run.path}" in shown and "status     complete" in shown and "headline   " in shown
    assert "groups" in shown and "metrics (" in shown and "lineage" in shown and "checkpoints/last.ckpt" in shown
    for group in run.tree.children:
        assert f"  {group} (" in shown

    _, n_axes = DEFAULT_PICTURE[experiment]
    png = tmp_path / "picture.png"
    assert nde_lab_main(["plot", f"{experiment}/latest", "--store", str(store), "-o", str(png)]) == 0
    assert capsys.readouterr().out.strip() == str(png)
    _check_png(png)
    fig = run.plot()  # the same picture from Python
    assert len(fig.axes) == n_axes and fig.get_suptitle().startswith(experiment)
    assert len(run.plot("training").axes) >= 1


@pytest.mark.parametrize("kind,n_axes", [("trace", 8), ("rank", 4), ("pair", 6)])
def test_posterior_plots_through_arviz(store, kind, n_axes, tmp_path):
    run = nde_lab.open_run(store / "lotka_volterra_bayes" / "latest")
    fig = run.plot(kind)
    assert len(fig.axes) == n_axes  # four scalar parameters: alpha, beta, gamma, delta
    fig.savefig(tmp_path / "p.png")
    _check_png(tmp_path / "p.png")


def test_phase_portrait_of_the_spiral(store, tmp_path):
    run = nde_lab.open_run(store / "spiral_node" / "latest")
    fig = run.plot("phase")
    (ax,) = fig.axes
    assert len(ax.collections) >= 1  # the quiver of the learned field
    fig.savefig(tmp_path / "phase.png")
    _check_png(tmp_path / "phase.png")


def test_plot_command_in_a_subprocess_and_bad_run_names(store, tmp_path, capsys):
    out = run_cli("plot", "ou_fit/latest", "--kind", "training", "-o", str(tmp_path / "t.png"), store=store)
    assert out.returncode == 0, out.stderr[-2000:]
    _check_png(tmp_path / "t.png", min_colours=4)
    for argv in (["show", "no_such_experiment/latest"], ["plot", "ou_fit/no_such_run"], ["show", str(tmp_path)]):
        assert nde_lab_main([*argv, "--store", str(store)]) == 2
    assert nde_lab_main(["plot", "ou_fit/latest", "--kind", "density", "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert "cannot show kind='density'" in err and "trajectories" in err


def test_failed_run_is_listed_shown_with_its_reason_and_has_nothing_to_plot(tmp_path, capsys):
    from nde_lab.store import RunWriter

    writer = RunWriter(tmp_path, "broken", "r1")
    writer.begin(recipe_yaml="", seed=0)
    writer.fail("SolverError: non-finite state at t=3.2")
    assert nde_lab_main(["runs", "--store", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == ["broken", "r1", "failed"]
    assert nde_lab_main(["show", str(tmp_path / "broken" / "r1")]) == 0
    assert "failure    SolverError: non-finite state at t=3.2" in capsys.readouterr().out
    assert nde_lab_main(["plot", "broken/r1", "--store", str(tmp_path)]) == 2
    assert "has nothing to plot" in capsys.readouterr().err


def test_sweep_plot_has_a_band_across_seeds():
    import xarray as xr

    from nde_lab.plot import plot_sweep

    rng = np.random.default_rng(0)
    width = np.array([8, 32, 128, 512])
    record = xr.Dataset({"mae": (("width", "seed"), 1 / np.sqrt(width)[:, None] + 0.01 * rng.normal(size=(4, 5)))},
                        coords={"width": width, "seed": np.arange(5)})
    fig = plot_sweep(record, "width")
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and len(ax.lines) == 5 + 1 and len(ax.collections) == 1
    with pytest.raises(ValueError, match="needs dims 'depth' and 'seed'"):
        plot_sweep(record, "depth")
