"""Data-parallel training (DDP, gloo on CPU, 2 processes) lands as exactly one run written by rank zero,
with metrics reduced (mean) across ranks."""

from __future__ import annotations

import numpy as np
from cli import RECIPES, run_cli, runs_in

import nde_lab
from nde_lab.cli import main as fit_main

# Adam on the full batch: with 2 ranks each rank holds half the paths, DDP averages the gradients, so
# the ranks' mean loss and every update equal the one-process ones (equal halves: mean of means = mean).
ARGS = ["--config", str(RECIPES / "ou_fit.yaml"), "--trainer.max_epochs", "3", "--data.init_args.n_paths", "20",
        "--data.init_args.sim_dt", "0.01", "--model.init_args.n_samples", "10",
        "--model.init_args.optimizer", '{"class_path": "torch.optim.Adam", "init_args": {"lr": 0.05}}']


def test_ddp_two_processes_write_one_run_with_rank_mean_metrics(tmp_path):
    store = tmp_path / "store"
    res = run_cli("fit", *ARGS, "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
                  "--run_name", "ddp", store=store, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert [p.name for p in runs_in(store)] == ["ddp"]  # one run, nothing partial, nothing from rank 1
    ddp = nde_lab.open_run(store / "ou_fit" / "ddp")
    assert ddp.attrs["world_size"] == 2  # two processes really trained
    assert ddp.status == "complete" and (ddp.path / "checkpoints" / "last.ckpt").exists()

    assert fit_main(["fit", *ARGS, "--store", str(store), "--experiment", "single", "--run_name", "one"]) == 0
    one = nde_lab.open_run(store / "single" / "one")
    # rank 0 alone would store the NLL of its own 10 paths; the stored value is the mean over ranks,
    # which is the 20-path NLL of the one-process run at every epoch
    for name in ("train_nll", "val_nll"):
        np.testing.assert_allclose(ddp.metrics[name].values, one.metrics[name].values, rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(ddp.group("parameters")["value"].values, one.group("parameters")["value"].values, rtol=1e-9)
    assert ddp.metrics.sizes["epoch"] == 3 and list(ddp.metrics["step"].values) == [1.0, 2.0, 3.0]
