"""Maximum-likelihood flow tasks: accuracy on a known mixture, grid normalisation, outputs, queries, errors, CLI."""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from figures_check import check_figures

import nde_lab
from nde_lab.data.toy2d import Toy2DDataModule
from nde_lab.dynamics import MLPVectorField
from nde_lab.errors import DataError, RecipeError
from nde_lab.flows import (
    CNF,
    AffineCoupling,
    DiscreteFlow,
    NonFiniteLossError,
    Permute,
    SplineCoupling,
)
from nde_lab.solvers import ODESolverOptions
from nde_lab.train.flow_tasks import CNFTask, FlowTask, density_grid

REPO = Path(__file__).resolve().parents[1]


def _trainer(epochs: int) -> L.Trainer:
    return L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, accelerator="cpu")


@pytest.mark.slow
def test_trained_flow_is_normalised_and_reaches_the_entropy_of_a_known_mixture() -> None:
    torch.manual_seed(0)
    flow = DiscreteFlow(2, [SplineCoupling(hidden=[32, 32], bins=8, bound=4.0), Permute(),
                            SplineCoupling(hidden=[32, 32], bins=8, bound=4.0)])
    task = FlowTask(flow, optimizer=functools.partial(torch.optim.Adam, lr=1e-2), n_samples=200, grid_size=120)
    dm = Toy2DDataModule("gaussian_mixture", n_train=4096, n_val=5000, batch_size=256, seed=0)
    _trainer(10).fit(task, dm)
    x = dm.val_x
    with torch.no_grad():
        log_q = flow.log_prob(x).numpy()
    log_p = dm.true_log_density(x.numpy())
    nll, entropy = -log_q.mean(), -log_p.mean()
    # paired difference: KL(p || q) estimated on the held-out points, with its MC standard error
    diff = log_p - log_q
    kl, se = diff.mean(), diff.std(ddof=1) / math.sqrt(len(diff))
    assert kl < 0.15, f"held-out NLL {nll:.3f} is {kl:.3f} nats above the true entropy {entropy:.3f}"
    assert kl > -3 * se, f"held-out NLL {nll:.3f} below the true entropy {entropy:.3f} beyond MC error"
    # the stored grid integrates to one
    outputs = task.run_outputs(dm)
    assert abs(outputs["density"].attrs["integral"] - 1) < 0.02
    assert outputs["density"]["log_prob"].dims == ("x", "y")
    assert outputs["samples"]["x"].shape == (200, 2)
    assert list(outputs["samples"]["dim"].values) == ["x", "y"]


def test_flow_task_queries_and_errors() -> None:
    torch.manual_seed(0)
    task = FlowTask(DiscreteFlow(2, [AffineCoupling(hidden=[8]), Permute(), AffineCoupling(hidden=[8])]))
    a, b = task.query_sample(None, 7, seed=3), task.query_sample(None, 7, seed=3)
    assert a["x"].dims == ("sample", "dim") and a["x"].shape == (7, 2)
    np.testing.assert_array_equal(a["x"].values, b["x"].values)
    lp = task.query_log_prob(None, np.zeros((4, 2)))
    assert lp.dims == ("sample",) and lp.shape == (4,) and lp.attrs["units"] == "nats"
    with pytest.raises(DataError, match=r"data dimension mismatch: the data has 5 coordinates"):
        task.query_log_prob(None, np.zeros((4, 5)))
    # non-finite data and a non-finite loss each name the problem
    with pytest.raises(DataError, match=r"training batch 2 holds NaN or inf"):
        task.training_step(torch.tensor([[float("nan"), 0.0]]), 2)
    with torch.no_grad():
        next(task.model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"negative log-likelihood\) is non-finite .* at FlowTask epoch 0, batch 0"):
        task.training_step(torch.zeros(4, 2), 0)


def test_task_argument_and_batch_errors_are_named() -> None:
    with pytest.raises(TypeError, match=r"FlowTask.model must be a DensityModel, got Linear"):
        FlowTask(torch.nn.Linear(2, 2))
    task = FlowTask(DiscreteFlow(2, [AffineCoupling(hidden=[4])]))
    with pytest.raises(DataError, match=r"expects batches x, \(x,\) or \(x, context\); got dict"):
        task.training_step({"x": torch.zeros(2, 2)}, 0)
    with pytest.raises(DataError, match=r"expects data of shape \(n, 2\) \(a batch of points\), got \(2, 2, 2\)"):
        task.training_step(torch.zeros(2, 2, 2), 0)


def test_conditional_flow_task_needs_a_context() -> None:
    flow = DiscreteFlow(2, [AffineCoupling(hidden=[8])], context_dim=1)
    task = FlowTask(flow)
    loss = task.training_step((torch.randn(8, 2), torch.randn(8, 1)), 0)
    assert torch.isfinite(loss)
    assert task.run_outputs(None) == {}
    with pytest.raises(DataError, match=r"missing context"):
        task.query_sample(None, 3)
    with pytest.raises(DataError, match=r"missing context"):
        task.training_step(torch.randn(8, 2), 0)
    assert task.query_sample(None, 3, context=[0.5])["x"].shape == (3, 2)
    assert task.query_log_prob(None, np.zeros((3, 2)), context=[[0.1], [0.2], [0.3]]).shape == (3,)


def test_cnf_task_logs_nfe_and_stores_solver_stats() -> None:
    torch.manual_seed(0)
    cnf = CNF(MLPVectorField(2, width=8, depth=1, time_input=True), kinetic_energy=0.1, jacobian_frobenius=0.1,
              solver=ODESolverOptions(method="rk4", step_size=0.25))
    task = CNFTask(cnf, n_samples=10, grid_size=30, grid_extent=6.0)
    dm = Toy2DDataModule("circles", n_train=256, n_val=128, batch_size=128, seed=0)
    trainer = _trainer(1)
    trainer.fit(task, dm)
    assert float(trainer.callback_metrics["nfe"]) == 16.0  # rk4: 4 steps x 4 stages
    assert {"train_nll", "val_nll", "train_bpd", "val_bpd", "kinetic_energy", "jacobian_frobenius", "val_nfe"} <= set(
        trainer.callback_metrics)
    out = task.run_outputs(dm)
    stats = out["solver_stats"]
    assert int(stats["log_prob_nfe"]) == 16 and int(stats["sample_nfe"]) == 16
    assert stats.attrs["method"] == "rk4" and stats.attrs["trace"] == "exact"
    assert abs(out["density"].attrs["integral"] - 1) < 0.02
    exact = task.query_log_prob(None, np.zeros((2, 2)))
    assert exact.attrs["trace"] == "exact" and "mcse" not in exact.coords
    hutch = task.query_log_prob(None, np.zeros((2, 2)), trace="hutchinson", num_probes=400, seed=0)
    assert hutch.shape == (2,) and hutch.attrs["num_probes"] == 400 and (hutch["mcse"] > 0).all()
    assert (np.abs(hutch - exact) < 4 * hutch["mcse"]).all()
    np.testing.assert_array_equal(
        hutch.values, task.query_log_prob(None, np.zeros((2, 2)), trace="hutchinson", num_probes=400, seed=0).values)
    with pytest.raises(ValueError, match=r"num_probes must be >= 1, got 0"):
        task.query_log_prob(None, np.zeros((2, 2)), trace="hutchinson", num_probes=0)
    with pytest.raises(RecipeError, match=r"trace='fast' is not valid; must be one of 'auto', 'exact', 'hutchinson'"):
        task.query_log_prob(None, np.zeros((2, 2)), trace="fast")
    with pytest.raises(RecipeError, match=r"CNFTask.eval_trace='fast' is not valid"):
        CNFTask(cnf, eval_trace="fast")


def test_density_grid_of_a_standard_normal() -> None:
    flow = DiscreteFlow(2, [Permute()])
    grid = density_grid(flow, extent=6.0, size=121)
    assert abs(grid.attrs["integral"] - 1) < 1e-4
    assert float(grid["log_prob"].sel(x=0.0, y=0.0, method="nearest")) == pytest.approx(-math.log(2 * math.pi), abs=1e-5)


# ---- the recipe, end to end through the real CLI ---------------------------------------------------
def _fit(config: str, store: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nde_lab.cli", "fit", "--config", str(REPO / "recipes" / config),
           "--store", str(store), *overrides]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_flow_8gaussians_recipe_runs_through_the_cli(tmp_path: Path) -> None:
    # the recipe's training budget (README's figure); only the stored picture is smaller
    proc = _fit("flow_8gaussians.yaml", tmp_path, "--model.init_args.grid_size", "20", "--model.init_args.n_samples", "50")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "flow_8gaussians").iterdir()
    run = nde_lab.open_run(run_dir)
    assert run.status == "complete" and run.attrs["model_family"] == "flow"
    check_figures("flow_8gaussians", run)
    assert run.tree["samples"].ds["x"].shape == (50, 2)
    assert run.tree["density"].ds["log_prob"].dims == ("x", "y")
    assert {"train_nll", "val_nll", "train_bpd", "val_bpd"} <= set(run.metrics.data_vars)
    np.testing.assert_allclose(run.metrics["val_bpd"], run.metrics["val_nll"] / math.log(2) / 2, rtol=1e-6)
    draws = run.sample(5, seed=0)
    np.testing.assert_array_equal(draws["x"].values, run.sample(5, seed=0)["x"].values)
    lp = run.log_prob(draws["x"].values)
    assert lp.shape == (5,) and np.isfinite(lp.values).all()
    with pytest.raises(DataError, match=r"data dimension mismatch"):
        run.log_prob(np.zeros((2, 3)))


def test_training_a_flow_of_the_wrong_dimension_fails_naming_it() -> None:
    task = FlowTask(DiscreteFlow(3, [AffineCoupling(hidden=[4])]))
    dm = Toy2DDataModule("circles", n_train=256, n_val=64, batch_size=128, seed=0)
    with pytest.raises(DataError, match=r"data has 2 coordinates per point but DiscreteFlow was built for dim=3; "
                                        r"set the flow's `dim` to 2"):
        _trainer(1).fit(task, dm)


def test_label_conditioned_flow_learns_each_component() -> None:
    torch.manual_seed(0)
    dm = Toy2DDataModule("gaussian_mixture", n_train=4096, n_val=4000, batch_size=256, seed=1, context="label")
    assert dm.context_dim == 2
    flow = DiscreteFlow(2, [AffineCoupling(hidden=[16]), Permute(), AffineCoupling(hidden=[16])],
                        context_dim=dm.context_dim, trainable_base=True)
    task = FlowTask(flow, optimizer=functools.partial(torch.optim.Adam, lr=1e-2), n_samples=400, grid_size=60)
    _trainer(6).fit(task, dm)
    # p(x | label k) is N(mean_k, 0.5² I): the paired held-out KL is small, per component
    means, std = np.array([[-1.0, 0.0], [1.0, 0.0]]), 0.5
    x, labels = dm.val_x, dm.val_labels
    with torch.no_grad():
        log_q = flow.log_prob(x, torch.nn.functional.one_hot(labels, 2).to(x.dtype)).numpy()
    xn, ln = x.numpy(), labels.numpy()
    log_p = -0.5 * ((xn - means[ln]) ** 2).sum(1) / std**2 - 2 * math.log(std) - math.log(2 * math.pi)
    diff = log_p - log_q
    assert diff.mean() < 0.05 and diff.mean() > -3 * diff.std() / math.sqrt(len(diff))
    out = task.run_outputs(dm)
    assert out["samples"]["x"].dims == ("label", "sample", "dim") and out["samples"]["x"].shape == (2, 200, 2)
    np.testing.assert_allclose(out["samples"]["x"].mean("sample").values, means, atol=0.15)
    assert out["density"]["log_prob"].dims == ("label", "x", "y")
    assert all(abs(i - 1) < 0.02 for i in out["density"].attrs["integral"])
