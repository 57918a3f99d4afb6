"""NUTS that finishes: chains in worker processes over the flat potential, with the sensitivity solver.

The flat potential is the program's log density (the Pyro-traced one, to round-off); chains are
reproducible per chain whatever process runs them; and the hare-lynx recipe, on a short budget in 2
processes with the LSODA sensitivity solve, agrees with the stored long NUTS reference in means.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nde_lab
from nde_lab.prob import LinearRegressionProgram, Prior, TabularData
from nde_lab.prob.fast import Unconstrained
from nde_lab.prob.nuts import FlatPotential, run_nuts_parallel

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads((ROOT / "benchmarks" / "reference" / "lotka_volterra_nuts.json").read_text())
SCALARS = {"alpha": ("alpha", None), "beta": ("beta", None), "gamma": ("gamma", None), "delta": ("delta", None),
           "z_init[hare]": ("z_init", 0), "z_init[lynx]": ("z_init", 1), "sigma[hare]": ("sigma", 0),
           "sigma[lynx]": ("sigma", 1)}


def _regression() -> tuple[LinearRegressionProgram, np.ndarray, np.ndarray]:
    """Conjugate Bayesian regression with known noise: (program, posterior mean (3,), covariance (3, 3))."""
    rng = np.random.default_rng(3)
    n, noise, tau = 40, 0.5, 2.0
    x = rng.normal(size=(n, 2))
    y = 1.0 + x @ np.array([0.7, -1.2]) + noise * rng.normal(size=n)
    prog = LinearRegressionProgram(priors={k: Prior("Normal", {"loc": 0.0, "scale": tau}) for k in ("a", "b1", "b2")},
                                   coefficients=["b1", "b2"], noise_scale=noise)
    prog.bind(TabularData(x=x, y=y, feature_names=["x1", "x2"]))
    design = np.column_stack([np.ones(n), x])
    cov = np.linalg.inv(design.T @ design / noise**2 + np.eye(3) / tau**2)
    return prog, cov @ design.T @ y / noise**2, cov


def test_flat_potential_is_the_traced_log_density(float64):
    prog, _, _ = _regression()
    prog_sigma = LinearRegressionProgram(
        priors={**{k: Prior("Normal", {"loc": 0.0, "scale": 2.0}) for k in ("a", "b1", "b2")},
                "sigma": Prior("HalfNormal", {"scale": 1.0})}, coefficients=["b1", "b2"])
    prog_sigma.bind(prog.data)
    for p in (prog, prog_sigma):
        pot, unc = FlatPotential(p), Unconstrained(p)
        assert pot.direct
        u = torch.randn(5, unc.dim, dtype=torch.float64)
        np.testing.assert_allclose(pot.log_density(u).numpy(), unc.log_density(u).numpy(), rtol=1e-12, atol=1e-10)
        # Pyro's scalar potential: -log p; a non-finite density is an infinite potential with zero gradient
        z = {"u": u[0].clone().requires_grad_(True)}
        e = pot(z)
        (g,) = torch.autograd.grad(e, z["u"])
        assert math.isclose(float(e.detach()), -float(unc.log_density(u[:1])[0]), rel_tol=1e-12)
        assert bool(torch.isfinite(g).all())
    z = {"u": torch.full((4,), 1e6, dtype=torch.float64, requires_grad=True)}  # exp(1e6) = inf noise scale
    e = FlatPotential(prog_sigma)(z)
    assert e == math.inf and float(torch.autograd.grad(e, z["u"])[0].abs().sum()) == 0.0


@pytest.mark.slow
def test_chains_in_processes_are_reproducible_and_exact(float64):
    """Two spawned workers give the same draws as one process, chain by chain (seed + chain), and the
    draws match the closed-form Gaussian posterior."""
    prog, mean, cov = _regression()
    kwargs = dict(num_chains=2, warmup=60, draws=100, seed=5, full_mass=True)
    par, facts = run_nuts_parallel(prog, workers=2, **kwargs)
    seq, facts_seq = run_nuts_parallel(prog, workers=1, **kwargs)
    assert len(set(facts["chain_pids"])) == 2 and os.getpid() not in facts["chain_pids"]
    assert set(facts_seq["chain_pids"]) == {os.getpid()}
    for k in ("a", "b1", "b2"):
        np.testing.assert_allclose(par.draws[k].numpy(), seq.draws[k].numpy(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(par.stats["n_steps"], seq.stats["n_steps"])
    assert par.stats["diverging"].shape == (2, 100) and not par.stats["diverging"].any()
    draws = np.stack([par.draws[k].numpy().ravel() for k in ("a", "b1", "b2")], axis=1)
    sd = np.sqrt(np.diag(cov))
    assert (np.abs(draws.mean(0) - mean) < 5 * sd / np.sqrt(50)).all()  # ESS >= 50 of 200 draws here


@pytest.mark.slow
def test_lotka_volterra_nuts_recipe_short_agrees_with_reference(tmp_path):
    """The recipe (LSODA sensitivities, Laplace start, dense mass) at 2 chains x (100 + 100) in 2 processes:
    means within 4 combined MC standard errors of the long reference; chains ran in parallel processes."""
    cmd = [sys.executable, "-m", "nde_lab.cli", "fit", "--config", str(ROOT / "recipes" / "lotka_volterra_nuts.yaml"),
           "--store", str(tmp_path), "--model.init_args.num_chains", "2", "--model.init_args.warmup", "100",
           "--model.init_args.draws", "100", "--model.init_args.chain_processes", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "lotka_volterra_nuts").iterdir()
    run = nde_lab.open_run(run_dir)
    post = run.posterior
    attrs = post.attrs
    assert attrs["init"] == "laplace" and attrs["chain_processes"] == 2 and attrs["full_mass"]
    pids = attrs["chain_pids"].split()
    chain_seconds = [float(s) for s in attrs["chain_seconds"].split()]
    assert len(set(pids)) == 2
    started = [float(t) for t in attrs["chain_started"].split()]
    # the chains overlapped in time (their own intervals: the pool's start-up is not in them)
    assert max(started) < min(t + s for t, s in zip(started, chain_seconds, strict=True))
    stats = run.tree["sample_stats"].to_dataset()
    assert stats["diverging"].dims == ("chain", "draw") and stats.sizes["draw"] == 100
    assert int(stats["diverging"].sum()) <= 3
    summary = run.summary
    for label, (name, i) in SCALARS.items():
        x = post[name].values if i is None else post[name].values[..., i]
        row = summary.sel(parameter=label)
        ess = float(row["ess_bulk"])
        ref = REFERENCE["parameters"][label]
        se = math.sqrt(x.std(ddof=1) ** 2 / ess + ref["mcse_mean"] ** 2)
        assert abs(x.mean() - ref["mean"]) < 4 * se, (label, x.mean(), ref["mean"], se)
        assert float(row["r_hat"]) < 1.05, label
