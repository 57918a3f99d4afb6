"""A scientist's own mechanistic ODE from a recipe (issue 12): a 3-state pharmacokinetic model written in a
small module in the test's tmp dir, with two constants, an infusion switched on at t = 4 > t0 and an
observation model on 2 of its 3 states, fitted through the real CLI by the fast posterior and by NUTS on
data simulated by scipy (independently of the lab)."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from nde_lab.prob.diagnostics import ess_bulk, resampled_ess
from nde_lab.run import open_run
from tests.cli import run_cli, runs_in

MODULE = '''
import torch
from nde_lab.dynamics import MechanisticField


class OralInfusionPK(MechanisticField):
    """Oral dose into the gut, absorption into a central compartment exchanging with a peripheral one,
    clearance CL out of the central volume V, and an intravenous infusion (an input, mg/h)."""

    states = ("gut", "central", "peripheral")
    parameters = ("ka", "CL", "k12")
    constants = ("V", "k21")

    def rhs(self, t, y, p):
        gut, central, peripheral = y.unbind(-1)
        absorbed = p["ka"] * gut
        exchange = p["k12"] * central - p["k21"] * peripheral
        eliminated = p["CL"] / p["V"] * central
        return torch.stack([-absorbed, absorbed - eliminated - exchange + p["infusion"], exchange], dim=-1)
'''

TRUTH = {"ka": 1.2, "CL": 4.0, "k12": 0.6, "sigma": 0.1}
V, K21, DOSE = 20.0, 0.3, 100.0
INFUSION = ([4.0, 8.0], [30.0, 0.0])  # 30 mg/h from t = 4 h to t = 8 h
TIMES = np.arange(0.5, 12.01, 0.5)


def _simulate(seed: int = 0) -> np.ndarray:
    """Concentrations (central / V, peripheral / V) at TIMES with LogNormal noise; scipy, piecewise over the
    infusion's switch times, rtol 1e-12."""
    ka, cl, k12 = TRUTH["ka"], TRUTH["CL"], TRUTH["k12"]

    def rhs(t, y, rate):
        gut, central, peripheral = y
        exchange = k12 * central - K21 * peripheral
        return [-ka * gut, ka * gut - cl / V * central - exchange + rate, exchange]

    edges = [0.0, *INFUSION[0], TIMES[-1]]
    rates = [0.0, *INFUSION[1]]  # the infusion rate on each piece between switches
    y, out = np.array([DOSE, 0.0, 0.0]), []
    for a, b, rate in zip(edges[:-1], edges[1:], rates, strict=True):
        inside = TIMES[(a < TIMES) & (b >= TIMES)]
        grid = np.unique(np.append(inside, b))
        sol = solve_ivp(rhs, (a, b), y, args=(rate,), t_eval=grid, rtol=1e-12, atol=1e-12, method="DOP853")
        out.append(sol.y[:, np.isin(grid, inside)].T)
        y = sol.y[:, -1]
    states = np.concatenate(out)
    conc = states[:, [1, 2]] / V
    rng = np.random.default_rng(seed)
    return conc * np.exp(TRUTH["sigma"] * rng.standard_normal(conc.shape))


def _recipe(task: str, data_csv: str) -> str:
    return textwrap.dedent(f"""\
        seed_everything: 0
        trainer: {{max_epochs: {3 if task == 'fast' else 1}, accelerator: cpu}}
        model:
          class_path: {'nde_lab.train.bayes.FastPosteriorTask' if task == 'fast' else 'nde_lab.train.bayes.NUTSTask'}
          init_args:
            program:
              class_path: nde_lab.prob.ODEProgram
              init_args:
                dynamics: pkmodel.OralInfusionPK
                constants: {{V: {V}, k21: {K21}}}
                initial_state: {{gut: {DOSE}, central: 0.0, peripheral: 0.0}}
                t0: 0.0
                inputs:
                  infusion: {{times: {INFUSION[0]}, values: {INFUSION[1]}, kind: step}}
                observation:
                  conc_central: {{states: [central], scale: {1 / V}}}
                  conc_peripheral: {{states: [peripheral], scale: {1 / V}}}
                priors:
                  ka: {{dist: LogNormal, args: {{loc: 0.0, scale: 0.5}}}}
                  CL: {{dist: LogNormal, args: {{loc: {math.log(5.0)}, scale: 0.5}}}}
                  k12: {{dist: LogNormal, args: {{loc: {math.log(0.5)}, scale: 0.5}}}}
                  sigma: {{dist: HalfNormal, args: {{scale: 0.5}}}}
                likelihood: {{family: LogNormal, scale: sigma}}
                method: rk4
                step_size: 0.5
        """) + (textwrap.indent(textwrap.dedent("""\
            num_particles: 32
            lr: 0.01
            num_chains: 4
            num_draws: 1000
            num_proposals: 8000
        """), "    ") if task == "fast" else textwrap.indent(textwrap.dedent("""\
            num_chains: 2
            chain_processes: 2
            init: laplace
            full_mass: true
            warmup: 100
            draws: 150
            progress: false
        """), "    ")) + textwrap.dedent(f"""\
        data:
          class_path: nde_lab.data.tabular.SeriesObservationsDataModule
          init_args:
            source: {{class_path: nde_lab.data.SeriesFile, init_args: {{path: {data_csv}, time_units: h}}}}
            steps_per_epoch: {50 if task == 'fast' else 1}
        """)


def _write_case(tmp_path):
    (tmp_path / "pkmodel.py").write_text(MODULE)
    y = _simulate()
    rows = ["time,conc_central,conc_peripheral"] + [f"{t:g},{a:.10g},{b:.10g}" for t, (a, b) in zip(TIMES, y, strict=True)]
    (tmp_path / "pk.csv").write_text("\n".join(rows) + "\n")
    for task in ("fast", "nuts"):
        (tmp_path / f"pk_{task}.yaml").write_text(_recipe(task, str(tmp_path / "pk.csv")))


def _fit(tmp_path, task: str):
    store = tmp_path / "store"
    proc = run_cli("fit", "--config", str(tmp_path / f"pk_{task}.yaml"), "--allow_import", "pkmodel",
                   "--experiment", f"pk_{task}", store=store, extra_path=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = [p for p in runs_in(store) if p.parent.name == f"pk_{task}"]
    return open_run(path)


def _draws(run) -> dict[str, np.ndarray]:
    post = run.posterior
    return {name: post[name].values for name in TRUTH}  # (chain, draw)


@pytest.mark.slow
def test_user_model_fast_and_nuts_recover_the_truth_and_agree(tmp_path):
    _write_case(tmp_path)
    fast, nuts = _fit(tmp_path, "fast"), _fit(tmp_path, "nuts")
    assert nuts.posterior.attrs["divergences"] == 0 and len(set(str(nuts.posterior.attrs["chain_pids"]).split())) == 2
    predictive = fast.tree["posterior_predictive"].to_dataset()
    assert predictive["y"].dims == ("chain", "draw", "time", "state")
    assert list(predictive["state"].values) == ["conc_central", "conc_peripheral"]
    for run in (fast, nuts):
        for name, draws in _draws(run).items():
            lo, hi = np.quantile(draws, [0.005, 0.995])
            assert lo < TRUTH[name] < hi, (run.path.name, name, lo, hi)
    # the two methods agree within Monte Carlo error (each mean's MCSE = sd / sqrt(ESS); the fast posterior's
    # draws are importance-resampled, so they carry the resampled ESS, not their count)
    fd, nd = _draws(fast), _draws(nuts)
    n_fast = fd["ka"].size
    fast_ess = resampled_ess(fast.posterior.attrs["ess_importance"], n_fast)
    for name in TRUTH:
        se = [fd[name].std() / math.sqrt(fast_ess), nd[name].std() / math.sqrt(ess_bulk(nd[name]))]
        gap = abs(fd[name].mean() - nd[name].mean())
        assert gap < 4 * math.hypot(*se), (name, fd[name].mean(), nd[name].mean(), se)


def test_a_scale_prior_that_can_go_negative_exits_2_naming_the_site_and_the_fix(tmp_path):
    """Through the real CLI (the other name errors are the same RecipeError, checked in-process below)."""
    old, new = "sigma: {dist: HalfNormal, args: {scale: 0.5}}", "sigma: {dist: Normal, args: {loc: 0.0, scale: 0.5}}"
    expected = ["priors.sigma", "LogNormal likelihood's scale", "HalfNormal", "low: 0"]
    _write_case(tmp_path)
    recipe = tmp_path / "pk_fast.yaml"
    text = recipe.read_text()
    assert old in text
    recipe.write_text(text.replace(old, new))
    store = tmp_path / "store"
    proc = run_cli("fit", "--config", str(recipe), "--allow_import", "pkmodel", store=store, extra_path=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    for fragment in expected:
        assert fragment in proc.stderr, (fragment, proc.stderr[-2000:])
    assert not runs_in(store)


def test_program_validation_names_the_recipe_key():
    from nde_lab.errors import RecipeError
    from nde_lab.prob import Likelihood, ODEProgram, Prior

    priors = {"beta": Prior("LogNormal", {"loc": 0.0, "scale": 1.0}), "gamma": Prior("LogNormal", {"loc": 0.0, "scale": 1.0}),
              "phi": Prior("Exponential", {"rate": 1.0})}
    nb = Likelihood(family="NegativeBinomial", concentration="phi")
    ok = dict(priors=priors, likelihood=nb, dynamics="sir", constants={"N": 763}, initial_state=[762, 1, 0],
              observation={"in_bed": {"states": ["I"]}})
    ODEProgram(**ok)
    cases = [
        (dict(constants={}), r"constants: SIR needs \['N'\]"),
        (dict(constants={"N": 763, "M": 1}), r"constants.M: SIR has constants \['N'\]"),
        (dict(initial_state={"S": 762, "I": 1}), r"initial_state: give one entry per state \['S', 'I', 'R'\]; missing \['R'\]"),
        (dict(observation={"in_bed": {"states": ["Q"]}}), r"observation.in_bed.states: name one or more of the model's states"),
        (dict(dynamics="SIR"), r"dynamics: 'SIR' is neither a built-in model"),
        (dict(coordinates="log"), r"coordinates: 'log' needs a model whose states stay positive"),
        (dict(priors={k: v for k, v in priors.items() if k != "gamma"}), r"priors: the model needs a prior for 'gamma'"),
        (dict(likelihood=Likelihood(family="Binomial", total_count=763), observation={"in_bed": {"states": ["I"], "scale": 0}}),
         r"observation.in_bed.scale must be a positive number"),
    ]
    cases += [
        (dict(priors={**priors, "phi": Prior("HalfNormall", {"scale": 1.0})}),
         r"priors.phi: unknown distribution 'HalfNormall'. Did you mean 'HalfNormal'"),
        (dict(priors={**priors, "phi": Prior("Normal", {"loc": 1.0, "scale": 1.0})}),
         r"priors.phi: the NegativeBinomial likelihood's concentration .* must be positive.*HalfNormal.*low: 0"),
    ]
    with pytest.raises(RecipeError, match=r"likelihood.family must be one of .*'LogNormal'.*got 'Lognormal'"):
        Likelihood(family="Lognormal", scale="sigma")
    for change, pattern in cases:
        with pytest.raises(RecipeError, match=pattern):
            ODEProgram(**{**ok, **change})
    # a fixed parameter needs no prior; a scale parameter does, and must be positive
    ODEProgram(**{**ok, "priors": {k: v for k, v in priors.items() if k != "gamma"}, "constants": {"N": 763, "gamma": 0.5}})
    with pytest.raises(RecipeError, match=r"priors.rho: an observation scale must be positive"):
        ODEProgram(**{**ok, "priors": {**priors, "rho": Prior("Normal", {"loc": 0.5, "scale": 0.1})},
                      "observation": {"in_bed": {"states": ["I"], "scale": "rho"}}})
