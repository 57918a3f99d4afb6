"""The hare-lynx fast posterior against a long NUTS reference of the same model (benchmarks/nuts_reference.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nde_lab
from nde_lab.data.series import load_hare_lynx
from nde_lab.prob import ODEProgram
from nde_lab.prob.diagnostics import resampled_ess
from nde_lab.prob.fast import Unconstrained

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from figures_check import check_figures  # noqa: E402
from reference_check import compare_to_reference, recipe_program  # noqa: E402

from benchmarks.nuts_reference import LABELS, OUT, HareLynxPosterior  # noqa: E402

REFERENCE = json.loads(OUT.read_text())
RECIPE = ROOT / "recipes" / "lotka_volterra_bayes.yaml"


def _lab_program(**solver) -> ODEProgram:
    """The recipe's program with the solver options replaced by `solver`, bound to its data."""
    s = load_hare_lynx()
    return recipe_program(RECIPE, s.times, s.values, list(s.state_names), **solver)


def _points(n: int, scale: float = 1.0) -> np.ndarray:
    """n unconstrained points around the reference posterior (scale x its sd)."""
    rng = np.random.default_rng(1)
    rows = [REFERENCE["parameters"][k] for k in LABELS]
    mean = np.log([r["mean"] for r in rows])
    sd = np.array([r["sd"] / r["mean"] for r in rows])  # sd of log theta, to first order
    return mean + scale * sd * rng.normal(size=(n, len(LABELS)))


def test_reference_diagnostics():
    assert REFERENCE["chains"] >= 4 and REFERENCE["draws"] >= 1000
    assert sum(REFERENCE["divergences"]) == 0
    for label in LABELS:
        row = REFERENCE["parameters"][label]
        assert {"mcse_mean", "mcse_sd", "mcse_q05", "mcse_q95"} <= set(row), label  # what the comparison needs
        assert row["r_hat"] < 1.01, label
        assert row["ess_bulk"] > 400, label


def test_reference_log_density_equals_the_labs(float64):
    """The independent numpy/scipy model = the lab's ODEProgram on the same unconstrained coordinates."""
    ref = HareLynxPosterior.hare_lynx()
    u = _points(6, scale=3.0)
    ours = np.array([ref.log_density(x)[0] for x in u])
    ours_grad = np.stack([ref.log_density(x)[1] for x in u])
    tight = Unconstrained(_lab_program(method="dopri5", step_size=None, rtol=1e-10, atol=1e-12))
    assert tight.names == ["alpha", "beta", "gamma", "delta", "z_init", "sigma"]
    ut = torch.as_tensor(u).requires_grad_(True)
    lab = tight.log_density(ut)
    (lab_grad,) = torch.autograd.grad(lab.sum(), ut)
    np.testing.assert_allclose(lab.detach().numpy(), ours, rtol=0, atol=2e-6)
    np.testing.assert_allclose(lab_grad.numpy(), ours_grad, rtol=1e-5, atol=1e-5)
    # the recipe's rk4 (step 0.1) changes log p by < 5e-3 near the posterior: negligible next to MC error
    rk4 = Unconstrained(_lab_program())
    with torch.no_grad():
        diff = rk4.log_density(torch.as_tensor(u)).numpy() - ours
    assert np.abs(diff).max() < 5e-3


def _scalar_draws(post, label: str) -> np.ndarray:
    name, _, state = label.partition("[")
    da = post[name]
    if state:
        da = da.sel(state=state.rstrip("]"))
    return da.values.ravel()


@pytest.mark.slow
def test_fast_recipe_agrees_with_long_nuts(tmp_path):
    cmd = [sys.executable, "-m", "nde_lab.cli", "fit", "--config", str(RECIPE), "--store", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "lotka_volterra_bayes").iterdir()
    run = nde_lab.open_run(run_dir)
    attrs = run.summary.attrs
    assert attrs["pareto_k"] < 0.7
    check_figures("lotka_volterra_bayes", run)
    post = run.posterior
    draws = {label: _scalar_draws(post, label) for label in LABELS}
    # importance-resampled draws carry the resampled ESS, not their count
    ess = resampled_ess(attrs["ess_importance"], post.sizes["chain"] * post.sizes["draw"])
    failures = compare_to_reference(draws, ess, REFERENCE)  # means, sds, 5% and 95% quantiles
    assert not failures, failures
    for label in LABELS:  # stated relative tolerance on the sds: 4 combined MC errors is ~ 8% here
        assert abs(draws[label].std(ddof=1) / REFERENCE["parameters"][label]["sd"] - 1) < 0.1, label
