"""The FFJORD recipe end to end through the real `nde-lab` CLI at its full budget (README's figure), then queried."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from figures_check import check_figures

import nde_lab

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cnf_checkerboard_recipe_runs_through_the_cli(tmp_path: Path) -> None:
    # the training budget is the recipe's; only the stored picture is smaller (grid and samples come after training)
    cmd = [sys.executable, "-m", "nde_lab.cli", "fit", "--config", str(REPO / "recipes" / "cnf_checkerboard.yaml"),
           "--store", str(tmp_path), "--model.init_args.grid_size", "24", "--model.init_args.n_samples", "40"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "cnf_checkerboard").iterdir()
    run = nde_lab.open_run(run_dir)
    assert run.status == "complete" and run.attrs["model_family"] == "cnf"
    check_figures("cnf_checkerboard", run)
    # function evaluations are recorded, per epoch and for the final solves
    assert {"nfe", "val_nfe", "kinetic_energy", "jacobian_frobenius", "train_nll", "val_nll", "val_bpd"} <= set(
        run.metrics.data_vars)
    assert float(run.metrics["nfe"][-1]) > 0
    stats = run.tree["solver_stats"].ds
    assert int(stats["log_prob_nfe"]) > 0 and int(stats["sample_nfe"]) > 0
    assert stats.attrs["method"] == "dopri5" and stats.attrs["trace"] == "exact"
    assert run.tree["samples"].ds["x"].shape == (40, 2)
    density = run.tree["density"].ds
    assert density["log_prob"].shape == (24, 24)
    assert abs(density.attrs["integral"] - 1) < 0.05  # coarse 24 x 24 grid
    np.testing.assert_allclose(run.metrics["val_bpd"], run.metrics["val_nll"] / (2 * math.log(2)), rtol=1e-6)
    # queries on the restored model
    draws = run.sample(4, seed=1)
    assert draws["x"].shape == (4, 2)
    lp = run.log_prob(draws["x"].values)
    assert lp.shape == (4,) and np.isfinite(lp.values).all() and lp.attrs["units"] == "nats"
