"""The damped oscillator's bundled series, its closed-form long NUTS reference (benchmarks/oscillator_reference.py)
and the recipe's fast posterior against it (recipes/damped_oscillator.yaml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser
from scipy import integrate, special

import nde_lab
from nde_lab.data import DampedOscillatorData, load_damped_oscillator
from nde_lab.data.oscillator import OSCILLATOR_NOISE_SD, OSCILLATOR_TRUE
from nde_lab.data.tabular import SeriesObservationsDataModule
from nde_lab.prob import ODEProgram
from nde_lab.prob.diagnostics import resampled_ess
from nde_lab.prob.fast import Unconstrained

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from reference_check import compare_to_reference, recipe_program  # noqa: E402

from benchmarks.oscillator_data import SEED, TIMES, closed_form_x  # noqa: E402
from benchmarks.oscillator_reference import (  # noqa: E402
    DERIVED,
    DRAWS,
    LABELS,
    OUT,
    OscillatorPosterior,
    derived,
    position,
    summarise,
)

REFERENCE = json.loads(OUT.read_text())
RECIPE = ROOT / "recipes" / "damped_oscillator.yaml"
TRUE = {**OSCILLATOR_TRUE, "sigma": OSCILLATOR_NOISE_SD}


def test_bundled_series_is_the_documented_synthetic_draw():
    """The CSV is what benchmarks/oscillator_data.py makes (closed form at the true values + seeded noise, 4
    decimals), its note says so, and a recipe names it as a source."""
    series = DampedOscillatorData().load()
    assert series.state_names == ["x"] and series.values.shape == (30, 1)
    np.testing.assert_allclose(series.times, TIMES)
    noise = np.random.default_rng(SEED).normal(0.0, OSCILLATOR_NOISE_SD, TIMES.size)
    np.testing.assert_allclose(series.values[:, 0], closed_form_x(TIMES, **OSCILLATOR_TRUE) + noise, atol=5e-5)
    assert "SYNTHETIC" in series.attrs["source_note"] and "seed 12" in series.attrs["source_note"]
    parser = ArgumentParser()
    parser.add_class_arguments(SeriesObservationsDataModule, "data")
    cfg = parser.parse_object({"data": {"source": {"class_path": "nde_lab.data.DampedOscillatorData"}}})
    np.testing.assert_array_equal(parser.instantiate(cfg).data.load().values.numpy().ravel(), series.values[:, 0])


def test_reference_is_long_and_converged():
    assert REFERENCE["chains"] >= 4 and REFERENCE["draws"] >= 2500 and sum(REFERENCE["divergences"]) == 0
    rows = {**REFERENCE["parameters"], **REFERENCE["derived"]}
    assert sorted(rows) == sorted(LABELS + DERIVED)
    for name, row in rows.items():
        assert row["r_hat"] <= 1.01, name
        assert min(row["ess_bulk"], row["ess_tail"]) > 4000, name
        assert row["mcse_mean"] < 0.02 * row["sd"] and row["mcse_q05"] < 0.05 * row["sd"], name
        assert row["q05"] < row["q50"] < row["q95"], name


def test_closed_form_solves_the_ode_with_an_exact_gradient():
    """The reference's x(t) = DOP853 (rtol 1e-12) of x'' + 2 zeta omega x' + omega^2 x = 0, and its gradient
    (and the whole log density's) = central differences."""
    t = load_damped_oscillator().times
    for omega, zeta, x0, v0 in [(1.5, 0.1, 1.0, 0.5), (0.7, 0.6, -0.3, 2.0), (3.0, 0.95, 0.2, -1.0)]:
        ode = integrate.solve_ivp(lambda _, y, w=omega, z=zeta: [y[1], -2 * z * w * y[1] - w * w * y[0]], (0.0, t[-1]),
                                  [x0, v0], t_eval=t, method="DOP853", rtol=1e-12, atol=1e-12)
        x, grad = position(t, omega, zeta, x0, v0)
        np.testing.assert_allclose(x, ode.y[0], rtol=0, atol=1e-9)
        theta, h = np.array([omega, zeta, x0, v0]), 1e-6
        fd = np.stack([(position(t, *(theta + h * e))[0] - position(t, *(theta - h * e))[0]) / (2 * h)
                       for e in np.eye(4)], axis=-1)
        np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-6)
    ref = OscillatorPosterior.bundled()
    for u in _points(3, 2.0):
        fd = np.array([(ref.log_density(u + 1e-6 * e)[0] - ref.log_density(u - 1e-6 * e)[0]) / 2e-6 for e in np.eye(5)])
        np.testing.assert_allclose(ref.log_density(u)[1], fd, rtol=1e-6, atol=1e-4)


def _points(n: int, scale: float) -> np.ndarray:
    """n unconstrained points u = (log omega, logit zeta, x0, v0, log sigma) around the reference posterior
    (scale x its sd, carried to u by the derivative of each bijection)."""
    rng = np.random.default_rng(3)
    mean = np.array([REFERENCE["parameters"][k]["mean"] for k in LABELS])
    sd = np.array([REFERENCE["parameters"][k]["sd"] for k in LABELS])
    omega, zeta, x0, v0, sigma = mean
    centre = np.array([np.log(omega), special.logit(zeta), x0, v0, np.log(sigma)])
    sd_u = sd * np.array([1 / omega, 1 / (zeta * (1 - zeta)), 1.0, 1.0, 1 / sigma])
    return centre + scale * sd_u * rng.normal(size=(n, len(LABELS)))


def _lab_program(**solver) -> ODEProgram:
    """The recipe's program with the solver options replaced by `solver`, bound to its data."""
    s = load_damped_oscillator()
    return recipe_program(RECIPE, s.times, s.values, list(s.state_names), **solver)


def _posterior_points(n: int) -> np.ndarray:
    """n stored reference draws, spread over the chains, as unconstrained points u (n, 5)."""
    theta = np.load(DRAWS)["theta"].astype(np.float64).reshape(-1, len(LABELS))
    theta = theta[np.linspace(0, len(theta) - 1, n).astype(int)]
    omega, zeta, x0, v0, sigma = theta.T
    return np.column_stack([np.log(omega), special.logit(zeta), x0, v0, np.log(sigma)])


def test_recipe_density_equals_the_closed_form_reference(float64):
    """The recipe's ODEProgram on its unconstrained coordinates (dopri5 at 1e-10) = the closed-form reference
    density, value to 1e-6 (1e-8 relative) and gradient to 1e-5, at posterior draws and 4 marginal sds out;
    the recipe's own rk4 (step 0.1) moves log p by < 3e-3 nats at posterior draws (measured over 400 draws:
    max 2.1e-3, sd 7e-4 across the posterior, so the fit moves far less than its Monte Carlo error)."""
    ref = OscillatorPosterior.bundled()
    bulk = _posterior_points(8)
    u = np.concatenate([bulk, _points(3, 1.0), _points(3, 4.0)])
    tight = Unconstrained(_lab_program(method="dopri5", step_size=None, rtol=1e-10, atol=1e-10))
    assert tight.names == LABELS  # same coordinates, same order: log, logit, identity, identity, log
    ours = np.array([ref.log_density(x)[0] for x in u])
    ours_grad = np.stack([ref.log_density(x)[1] for x in u])
    ut = torch.as_tensor(u).requires_grad_(True)
    lab = tight.log_density(ut)
    (lab_grad,) = torch.autograd.grad(lab.sum(), ut)
    np.testing.assert_allclose(lab.detach().numpy(), ours, rtol=1e-8, atol=1e-6)
    np.testing.assert_allclose(lab_grad.numpy(), ours_grad, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        rk4 = Unconstrained(_lab_program()).log_density(torch.as_tensor(bulk)).numpy()
    err = np.abs(rk4 - ours[: len(bulk)])
    assert err.max() < 3e-3, err


@pytest.fixture(scope="module")
def halves() -> tuple[dict, dict, dict]:
    """The stored reference draws split by chains: (record of chains 0-1, draws of 2-3, their ESS)."""
    theta = np.load(DRAWS)["theta"].astype(np.float64)
    assert theta.shape == (REFERENCE["chains"], REFERENCE["draws"], len(LABELS))
    params, extra = summarise(theta[:2])
    other = _draws(theta[2:])
    ess = {k: float(min(az.ess(x, method="bulk"), az.ess(x, method="tail"))) for k, x in other.items()}
    return {"parameters": params, "derived": extra}, other, ess


def test_split_halves_of_the_reference_agree_and_the_record_summarises_the_draws(halves):
    record, draws, ess = halves
    assert compare_to_reference(draws, ess, record) == []
    full = np.load(DRAWS)["theta"].astype(np.float64)
    for i, k in enumerate(LABELS):
        assert abs(full[..., i].mean() - REFERENCE["parameters"][k]["mean"]) < 1e-5 * REFERENCE["parameters"][k]["sd"]


def _draws(theta: np.ndarray) -> dict[str, np.ndarray]:
    return {**{k: theta[..., i] for i, k in enumerate(LABELS)}, **derived(theta)}


@pytest.mark.slow
def test_oscillator_recipe_matches_the_long_nuts_reference(tmp_path):
    """recipes/damped_oscillator.yaml (fast posterior) through the real CLI: mean, sd, 5% and 95% quantile of
    omega, zeta, x0, v0, sigma, the period and the decay rate within 4 combined Monte Carlo errors of the
    reference; every data-generating value inside the fit's central 99% interval."""
    cmd = [sys.executable, "-m", "nde_lab.cli", "fit", "--config", str(RECIPE), "--store", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "damped_oscillator").iterdir()
    post = nde_lab.open_run(run_dir).posterior
    attrs = dict(post.attrs)
    assert attrs["pareto_k"] < attrs["pareto_k_threshold"] and attrs["tail_check"] == "passed"
    theta = np.stack([post[k].transpose("chain", "draw").values for k in LABELS], axis=-1)
    ess = resampled_ess(attrs["ess_importance"], post.sizes["chain"] * post.sizes["draw"])
    assert compare_to_reference(_draws(theta), ess, OUT, z=4.0) == []
    for i, k in enumerate(LABELS):
        low, high = np.quantile(theta[..., i], [0.005, 0.995])
        assert low < TRUE[k] < high, (k, TRUE[k], low, high)
