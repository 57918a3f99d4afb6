"""Every theory recipe through the real `nde-lab fit` at a tiny budget; probes callable on the stored run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from cli import RECIPES, run_cli

import nde_lab
from nde_lab.theory import gather, hessian_spectrum, ntk

TINY = {
    "theory_ntk_width": [],
    "theory_edge_of_stability": ["--trainer.max_epochs", "2", "--data.init_args.steps_per_epoch", "2"],
    "theory_width_regimes": ["--trainer.max_epochs", "2", "--data.init_args.steps_per_epoch", "2",
                             "--model.init_args.network.init_args.width", "64"],
    "theory_mup_transfer": ["--trainer.max_epochs", "1"],
    "theory_seed_robustness": ["--trainer.max_epochs", "2", "--data.init_args.steps_per_epoch", "2"],
}
GROUPS = {
    "theory_ntk_width": {"ntk"},
    "theory_edge_of_stability": {"hessian"},
    "theory_width_regimes": {"ntk", "weight_change", "linearized"},
    "theory_mup_transfer": {"coordinate_check"},
    "theory_seed_robustness": {"function", "pruning", "hessian", "hessian_final"},
}


@pytest.mark.parametrize("recipe", sorted(TINY))
def test_theory_recipe_runs_through_the_cli(tmp_path, recipe):
    out = run_cli("fit", "--config", str(RECIPES / f"{recipe}.yaml"), *TINY[recipe], store=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = nde_lab.open_run(tmp_path / recipe / "latest")
    assert run.status == "complete" and run.attrs["model_family"] == "regression"
    assert set(run.tree.children) >= GROUPS[recipe] | {"evaluation", "metrics"}
    assert {"width", "lr", "parametrization", "seed"} <= set(run.attrs)
    if recipe == "theory_ntk_width":
        stored = run.group("ntk")
        assert stored["kernel"].dims == ("epoch", "point", "point_other", "output", "output_other")
        assert stored["eigenvalues"].dims == ("epoch", "eigen_index") and float(stored["drift"][0]) == 0.0
        assert 0 < float(stored["analytic_error"][0]) < 0.5
        # the probe called from Python on the stored run reproduces the last stored kernel
        x, _ = _train(run)
        again = ntk(run, x[:8].numpy())
        np.testing.assert_allclose(again["kernel"].values, stored["kernel"].isel(epoch=-1).values, rtol=1e-4)
        # a grid of run paths (what a sweep record's runs["run_path"] holds) reduces to a DataArray
        paths = xr.DataArray([[str(run.path)]], dims=("width", "seed"), coords={"width": [256], "seed": [0]})
        error = gather(paths, lambda r: float(r.group("ntk")["analytic_error"][0]))
        assert error.dims == ("width", "seed") and float(error[0, 0]) == float(stored["analytic_error"][0])
        spectrum = hessian_spectrum(run, k=2, n_probes=2, slq_steps=10, hutchinson_probes=4)
        assert spectrum["top_eigenvalues"].dims == ("eigen_index",) and spectrum.attrs["n_parameters"] == 4 * 256 + 1
    if recipe == "theory_seed_robustness":
        assert run.group("pruning")["loss"].dims == ("amount",)
        assert run.group("function")["f"].dims == ("point", "output")


def _train(run) -> tuple[torch.Tensor, torch.Tensor]:
    from nde_lab.theory._common import training_set

    return training_set(run)


def test_ntk_probe_follows_a_neural_ode_vector_field_from_its_recipe():
    from nde_lab.theory.points import RecipePoint

    probe = '[{"class_path": "nde_lab.theory.NTKProbe", "init_args": {"n_inputs": 5}}]'
    point = RecipePoint(RECIPES / "spiral_node.yaml", ["--trainer.max_epochs", "2", "--data.init_args.batches_per_epoch",
                                                       "2", "--trainer.callbacks", probe])
    stored = point.fit()["ntk"]
    assert stored["kernel"].dims == ("epoch", "point", "point_other", "output", "output_other")
    assert stored.sizes["point"] == 5 and stored.sizes["output"] == 2 and list(stored["epoch"].values) == [0, 1, 2]
    assert float(stored["drift"][-1]) > 0 and np.all(stored["eigenvalues"].values >= -1e-6)
