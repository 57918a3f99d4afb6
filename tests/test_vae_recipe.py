"""The VAE recipe end to end through the real `nde-lab` CLI at its full budget (README's figure), then queried."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from figures_check import check_figures

import nde_lab

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_vae_digits_recipe_runs_through_the_cli(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "nde_lab.cli", "fit", "--config", str(REPO / "recipes" / "vae_digits.yaml"),
           "--store", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "vae_digits").iterdir()
    run = nde_lab.open_run(run_dir)
    assert run.status == "complete" and run.attrs["model_family"] == "vae"
    check_figures("vae_digits", run)
    assert {"train_elbo", "val_elbo", "val_iwae", "val_nll", "val_bpd", "baseline_nll"} <= set(run.metrics.data_vars)
    n_val = 359
    latent = run.tree["latent"].ds
    assert latent["z_loc"].shape == (n_val, 8) and latent["label"].shape == (n_val,)
    rec = run.tree["reconstruction"].ds
    assert rec["x"].shape == (n_val, 64) and rec["x_rec"].shape == (n_val, 64)
    assert ((rec["x_rec"] >= 0) & (rec["x_rec"] <= 1)).all()
    evaluation = run.tree["evaluation"].ds
    assert evaluation.attrs["mean_iwae"] >= evaluation.attrs["mean_elbo"] - 0.1
    samples = run.tree["samples"].ds
    assert samples["x"].shape == (64, 64) and set(np.unique(samples["x"].values)) <= {0.0, 1.0}
    # queries: an importance-weighted log-likelihood with its MC standard error, and fresh images
    x = rec["x"].values[:3]
    lp = run.log_prob(x, num_particles=32, seed=0)
    assert lp.shape == (3,) and lp.attrs["num_particles"] == 32 and (lp["mcse"] > 0).all()
    np.testing.assert_array_equal(lp.values, run.log_prob(x, num_particles=32, seed=0).values)
    assert run.sample(5, seed=2)["x"].shape == (5, 64)
