"""`nde-lab sweep` end to end: the real CLI, real runs, a real Dask cluster on 127.0.0.1 with a worker
killed mid-sweep, resume, and bad input."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from cli import RECIPES, REPO, run_cli, runs_in
from scipy import stats

import nde_lab
from nde_lab.sweep.plots import plot_conclusion

GRID = ["--grid", "data.init_args.n_paths=20,40", "--seeds", "3"]
BUDGET = ["--trainer.max_epochs", "1", "--model.init_args.n_samples", "10", "--data.init_args.sim_dt", "0.01"]
NAME = ["--name", "sw"]
CONCLUSIONS = """
conclusions:
  theta: {parameter: theta, tolerance: 1.0}
  mu_exact: {parameter: mu, tolerance: 1.0e-6}
  p_high: {prob: {var: y, time: 10.0, op: ">", value: 2.0}, n: 200}
"""


def _recipe(tmp: Path) -> Path:
    path = tmp / "ou_sweep.yaml"
    path.write_text((RECIPES / "ou_fit.yaml").read_text() + CONCLUSIONS)
    return path


def _values(sweep: nde_lab.sweep.Sweep) -> dict[str, np.ndarray]:
    """Per-run scalars that do not depend on timing."""
    scalars = sweep.scalars
    return {k: scalars[k].values for k in scalars.data_vars if "wall_time" not in k}


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    recipe, store = _recipe(tmp), tmp / "store"
    res = run_cli("sweep", "--config", str(recipe), *GRID, *NAME, "--workers", "2", *BUDGET, store=store)
    values = _values(nde_lab.open_sweep(store / "ou_sweep")) if res.returncode == 0 else {}
    return recipe, store, res, values  # values read now: the resume test extends this sweep


def test_sweep_2x3_six_runs_record_and_numpy_summaries(local_sweep):
    _, store, res, _ = local_sweep
    assert res.returncode == 0, res.stderr[-3000:]
    runs = [r for r in runs_in(store) if not r.name.startswith("_")]
    assert len(runs) == 6 and not [r for r in runs if r.name.endswith(".partial")]
    sweep = nde_lab.open_sweep(store / "ou_sweep")
    assert dict(sweep.scalars.sizes) == {"n_paths": 2, "seed": 3}
    assert sweep.keys == {"n_paths": "data.init_args.n_paths"}
    assert (sweep.runs["status"] == "complete").all()
    # each point is an ordinary run made with its own settings and seeds
    run = sweep.open_run(n_paths=40, seed=2)
    assert run.config["data"]["init_args"]["n_paths"] == 40 and run.config["data"]["init_args"]["seed"] == 2
    assert run.config["seed_everything"] == 2 and run.group("observed_data").sizes["path"] == 40
    # the data seed matters: seeds give different fits
    theta = sweep.scalars["parameters.theta"].values
    assert np.unique(theta.round(12)).size == 6
    # summaries equal numpy / scipy on the per-run values
    for name in ("parameters.theta", "metrics.train_nll", "conclusions.p_high"):
        x = sweep.scalars[name].values
        s = sweep.summary[name]
        np.testing.assert_allclose(s.sel(statistic="mean"), x.mean(1), rtol=1e-12)
        np.testing.assert_allclose(s.sel(statistic="sd"), x.std(1, ddof=1), rtol=1e-12)
        np.testing.assert_allclose(s.sel(statistic="se"), stats.sem(x, axis=1), rtol=1e-12)
        np.testing.assert_allclose(s.sel(statistic="ci_high"), x.mean(1) + stats.t.ppf(0.975, 2) * stats.sem(x, axis=1), rtol=1e-12)
        np.testing.assert_allclose(s.sel(statistic="min"), x.min(1), rtol=0)
        np.testing.assert_allclose(s.sel(statistic="max"), x.max(1), rtol=0)
    # conclusions: values over the grid with across-seed intervals and a robustness verdict
    c = sweep.conclusion("theta")
    np.testing.assert_array_equal(c["value"].values, theta)
    assert bool(c["robust"].all()) and not bool(sweep.conclusion("mu_exact")["robust"].any())
    p = sweep.scalars["conclusions.p_high"].values
    assert ((p > 0.05) & (p < 0.95)).all()  # P(X_10 > 2) of an OU with mean ~2: near 1/2
    assert "theta at 20" in res.stdout and "NOT robust" in res.stdout
    fig = plot_conclusion(sweep, "theta")
    points = fig.axes[0].lines[0].get_ydata()
    np.testing.assert_array_equal(points, theta.ravel())


def test_resume_runs_only_missing_points_and_records_failures(local_sweep):
    recipe, store, _, _ = local_sweep
    sweep = nde_lab.open_sweep(store / "ou_sweep")
    before = {str(p): nde_lab.open_run(str(p)).attrs["created"] for p in sweep.runs["run_path"].values.ravel()}
    theta = sweep.scalars["parameters.theta"].values  # read now: the record is rewritten in place below
    victim = Path(str(sweep.runs["run_path"].sel(n_paths=40, seed=1).item()))
    import shutil

    shutil.rmtree(victim)  # an interrupted sweep: one point never finished
    (victim.parent / f".{victim.name}.partial").mkdir()  # ... and left a half-written run behind
    # same sweep name, one more grid value that fails at construction (n_paths=0): recorded, not fatal
    res = run_cli("sweep", "--config", str(recipe), "--grid", "data.init_args.n_paths=20,40,0", "--seeds", "3",
                  *NAME, "--workers", "2", *BUDGET, store=store)
    assert res.returncode == 1, res.stderr[-3000:]
    assert "9 point(s), 5 already in the store, running 4" in res.stderr
    after = nde_lab.open_sweep(store / "ou_sweep")
    names_before = {p.name for p in runs_in(store)}
    status = after.runs["status"]
    assert (status.sel(n_paths=[20, 40]) == "complete").all()
    assert (status.sel(n_paths=0) == "failed").all()
    assert "n_paths" in str(after.runs["failure"].sel(n_paths=0, seed=0).item())
    for path, created in before.items():
        if path != str(victim):
            assert nde_lab.open_run(path).attrs["created"] == created  # not re-run
    assert nde_lab.open_run(victim).status == "complete"
    assert not [p for p in runs_in(store) if p.name.endswith(".partial")]
    np.testing.assert_allclose(after.scalars["parameters.theta"].sel(n_paths=[20, 40]).values, theta, rtol=1e-12)
    # the same name after the recipe changed: refused before anything runs, never mixed with the old points
    edited = recipe.with_name("ou_sweep_edited.yaml")
    edited.write_text(recipe.read_text().replace("conclusions:", "# edited\nconclusions:"))
    res = run_cli("sweep", "--config", str(edited), "--experiment", "ou_sweep", "--grid", "data.init_args.n_paths=20,40",
                  "--seeds", "3", *NAME, *BUDGET, store=store)
    assert res.returncode == 2 and "sweep 'sw'" in res.stderr and "another recipe" in res.stderr, res.stderr[-2000:]
    assert {p.name for p in runs_in(store)} == names_before


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dask_cluster():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = subprocess.DEVNULL
    procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, stdout=log, stderr=log)]
    for _ in range(2):
        procs.append(subprocess.Popen(["dask", "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-nanny",
                                       "--no-dashboard", "--host", "127.0.0.1"], env=env, stdout=log, stderr=log))
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(2, timeout=120)
    yield address, procs
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


def test_dask_sweep_with_a_killed_worker_matches_local(local_sweep, dask_cluster, tmp_path):
    recipe, _, _, local = local_sweep
    address, procs = dask_cluster
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "nde_lab", "sweep", "--config", str(recipe), *GRID, *NAME, "--executor", "dask",
           "--scheduler", address, *BUDGET, "--store", str(store)]
    sweep_proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    experiment = store / "ou_sweep"
    deadline = time.time() + 900
    partials: list[str] = []
    while time.time() < deadline and sweep_proc.poll() is None:
        partials = [p.name for p in experiment.glob(".*.partial")] if experiment.is_dir() else []
        if len(partials) >= 2:  # both workers are mid-point: kill one
            break
        time.sleep(0.2)
    assert len(partials) >= 2, "the sweep never had two points running"
    procs[1].kill()
    killed_at = time.time()
    _, err = sweep_proc.communicate(timeout=1800)
    assert sweep_proc.returncode == 0, err[-3000:]
    runs = [p for p in experiment.iterdir() if not p.name.startswith("_")]
    assert len(runs) == 6 and not [p for p in runs if p.name.endswith(".partial")]  # no duplicate, no half run
    sweep = nde_lab.open_sweep(experiment)
    assert (sweep.runs["status"] == "complete").all()
    # the interrupted point was run again from scratch after the kill
    created = {p: datetime.fromisoformat(nde_lab.open_run(experiment / p[1:].removesuffix(".partial")).attrs["created"])
               for p in partials}
    restarted = [p for p, c in created.items() if c.timestamp() > killed_at + 1]
    assert restarted, (partials, err[-2000:])
    remote = _values(sweep)
    assert local.keys() == remote.keys()
    for key in local:
        np.testing.assert_allclose(remote[key], local[key], rtol=1e-9, err_msg=key)


def test_bad_input_exits_2_and_runs_nothing(tmp_path):
    store = tmp_path / "store"
    recipe = str(RECIPES / "ou_fit.yaml")
    res = run_cli("sweep", "--config", recipe, "--grid", "model.init_args.no_such_key=1,2", store=store)
    assert res.returncode == 2 and "model.init_args.no_such_key" in res.stderr, res.stderr[-2000:]
    res = run_cli("sweep", "--config", recipe, store=store)
    assert res.returncode == 2 and "empty sweep" in res.stderr
    res = run_cli("sweep", "--config", recipe, "--grid", "data.init_args.n_paths=", store=store)
    assert res.returncode == 2 and "empty value list" in res.stderr
    start = time.time()
    res = run_cli("sweep", "--config", recipe, "--grid", "data.init_args.n_paths=20,40", "--executor", "dask",
                  "--scheduler", f"tcp://127.0.0.1:{_free_port()}", store=store)
    assert res.returncode == 2 and "cannot reach the Dask scheduler" in res.stderr, res.stderr[-2000:]
    assert time.time() - start < 60
    assert not store.exists() or not runs_in(store)
