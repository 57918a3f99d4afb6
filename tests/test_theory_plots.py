"""Plots of the theory probes on ONE tiny theory run built in-process through the real `nde-lab fit`, and the
log-log width-slope figure of an analysis grid."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import xarray as xr
from matplotlib.image import imread
from ux_runs import RECIPES

import nde_lab
from nde_lab.commands import main as nde_lab_main
from nde_lab.plot import available_kinds, plot_width_slopes

PROBES = [
    {"class_path": "nde_lab.theory.NTKProbe", "init_args": {"n_inputs": 6}},
    {"class_path": "nde_lab.theory.HessianProbe",
     "init_args": {"every_n_epochs": 1, "k": 2, "hutchinson_probes": 4, "slq_probes": 2, "slq_steps": 10}},
    {"class_path": "nde_lab.theory.CoordinateCheck", "init_args": {"n_steps": 3}},
    {"class_path": "nde_lab.theory.WeightChangeProbe"},
    {"class_path": "nde_lab.theory.PruningProbe"},
]
#: kind -> number of axes it draws
KIND_AXES = {"ntk": 2, "hessian": 2, "hessian_spectrum": 1, "coordinate_check": 2, "weight_change": 1, "pruning": 2}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from nde_lab.cli import main

    store = tmp_path_factory.mktemp("theory_store")
    args = ["fit", "--config", str(RECIPES / "theory_seed_robustness.yaml"), "--trainer.max_epochs", "2",
            "--data.init_args.steps_per_epoch", "2", "--trainer.check_val_every_n_epoch", "1",
            "--trainer.callbacks", json.dumps(PROBES), "--store", str(store), "--quiet"]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(args) == 0, err.getvalue()[-3000:]
    return nde_lab.open_run(store / "theory_seed_robustness" / "latest")


def _check_png(path, min_colours: int = 6) -> None:
    assert path.stat().st_size > 8000, path.stat().st_size
    pixels = imread(path)[..., :3].reshape(-1, 3)
    colours = np.unique((pixels * 255).round().astype(np.uint8), axis=0)
    assert len(colours) >= min_colours, len(colours)


def test_every_theory_kind_draws_its_probe(run, tmp_path, capsys):
    assert set(KIND_AXES) <= set(available_kinds(run))
    for kind, n_axes in KIND_AXES.items():
        fig = run.plot(kind)
        assert len(fig.axes) == n_axes, (kind, len(fig.axes))
        assert all(ax.has_data() for ax in fig.axes), kind
        png = tmp_path / f"{kind}.png"
        assert nde_lab_main(["plot", str(run.path), "--kind", kind, "-o", str(png)]) == 0, kind
        assert capsys.readouterr().out.strip() == str(png)
        _check_png(png)
    # the sharpness panel carries the 2/eta line at the recipe's lr 0.3
    sharp = run.plot("hessian").axes[0]
    assert any(np.allclose(line.get_ydata(), 2 / 0.3) for line in sharp.get_lines())
    # one line per layer in the coordinate check, one per recorded epoch in the NTK spectrum
    assert len(run.plot("coordinate_check").axes[0].get_lines()) == run.group("coordinate_check").sizes["layer"]
    assert len(run.plot("ntk").axes[0].get_lines()) == run.group("ntk").sizes["epoch"]


def test_width_slope_figure_recovers_the_power_law(tmp_path):
    width = np.array([64, 128, 256, 512, 1024])
    rng = np.random.default_rng(0)
    exponents = {"standard": 0.5, "mup": 0.0}
    data = np.stack([[2.0 * width ** e * np.exp(0.01 * rng.standard_normal(len(width))) for _ in range(3)]
                     for e in exponents.values()])  # (parametrization, seed, width)
    values = xr.DataArray(data, dims=("parametrization", "seed", "width"), name="update_size",
                          coords={"parametrization": list(exponents), "width": width})
    fig = plot_width_slopes(values)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0].startswith("standard: slope 0.5") and texts[1].startswith("mup: slope 0.0"), texts
    png = tmp_path / "slopes.png"
    fig.savefig(png)
    _check_png(png)
    with pytest.raises(ValueError, match="'width' dim"):
        plot_width_slopes(values.isel(width=0))
