"""SIGKILL at several instants of a run's life and of `run.save` (real subprocesses, real store):
afterwards `list_runs` works, nothing opens as complete unless it is, live runs are not dead, gc
cleans the rest (issue 8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import nde_lab
from nde_lab.errors import StoreError
from nde_lab.store import RunWriter, list_runs

ROOT = Path(__file__).resolve().parents[1]

# The child writes a run (or saves to one) and SIGKILLs itself at the instant named by argv[2].
CHILD = r"""
import os, signal, sys
import numpy as np, xarray as xr
import zarr.storage
from nde_lab.store import RunWriter, writer as writer_module, save as save_module
import nde_lab

store, instant = sys.argv[1], sys.argv[2]
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
groups = {"trajectories": xr.Dataset({"y": (("sample", "time"), np.ones((64, 4096)))}),
          "metrics": xr.Dataset({"loss": ("epoch", [1.0, 0.5])})}
if instant.startswith("chunk"):  # inside the final write / the save's write, after k objects
    k, seen, original = int(instant.split(":")[1]), [0], zarr.storage.LocalStore.set
    async def set_then_die(self, key, value, *a, **kw):
        await original(self, key, value, *a, **kw)
        seen[0] += 1
        if seen[0] == k:
            die()
    zarr.storage.LocalStore.set = set_then_die
if sys.argv[3] == "save":
    run = nde_lab.open_run(os.path.join(store, "exp", "done"))
    if instant == "before-manifest":
        save_module.hash_files = die
    run.save("added", xr.Dataset({"z": (("sample", "time"), np.zeros((64, 4096)))}))
    sys.exit(0)
w = RunWriter(store, "exp", "victim")
w.begin(recipe_yaml="model: {}\n", seed=0)
if instant == "running":
    print("BEGUN", flush=True); import time; time.sleep(120)
if instant == "before-rename":
    writer_module.os.rename = die
if instant == "before-unlock":
    writer_module.Location.remove = die
w.complete(groups)
"""


def _kill_at(store: Path, instant: str, mode: str = "run") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", CHILD, str(store), instant, mode], env=env, capture_output=True,
                          text=True, timeout=120)


def _done(store: Path) -> Path:
    writer = RunWriter(store, "exp", "done")
    writer.begin(recipe_yaml="", seed=0)
    return writer.complete({"metrics": xr.Dataset({"loss": ("epoch", [2.0])})})


@pytest.mark.parametrize("instant", ["chunk:1", "chunk:4", "before-rename"])
def test_a_run_killed_before_its_commit_is_dead_and_collected(tmp_path, instant):
    done = _done(tmp_path)
    result = _kill_at(tmp_path, instant)
    assert result.returncode == -signal.SIGKILL, result.stderr
    table = list_runs(tmp_path).set_index("run_id")
    assert table.loc["victim", "status"] == "dead" and table.loc["victim", "partial"]
    assert table.loc["done", "status"] == "complete"
    with pytest.raises(StoreError):
        nde_lab.open_run(tmp_path / "exp" / "victim")
    assert nde_lab.open_run(tmp_path / "exp" / "latest").path == done
    removed = nde_lab.gc(tmp_path)
    assert len(removed) == 1 and removed[0]["path"].endswith(".victim.partial")
    assert list(list_runs(tmp_path)["run_id"]) == ["done"]


def test_a_run_killed_after_its_commit_is_complete_and_intact(tmp_path):
    result = _kill_at(tmp_path, "before-unlock")
    assert result.returncode == -signal.SIGKILL, result.stderr
    run = nde_lab.open_run(tmp_path / "exp" / "victim", full_check=True)
    assert run.status == "complete" and float(run.trajectories["y"].sum()) == 64 * 4096
    assert [r["reason"] for r in nde_lab.gc(tmp_path)] == ["stale writer lock of a committed run"]


def test_a_live_run_is_running_until_killed(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), "running", "run"], env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "BEGUN"
        assert list_runs(tmp_path).iloc[0]["status"] == "running"
        assert nde_lab.gc(tmp_path) == []
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert list_runs(tmp_path).iloc[0]["status"] == "dead"
    assert len(nde_lab.gc(tmp_path)) == 1 and list_runs(tmp_path).empty


@pytest.mark.parametrize("instant", ["chunk:3", "before-manifest"])
def test_a_save_killed_midway_leaves_the_run_as_before(tmp_path, instant):
    done = _done(tmp_path)
    result = _kill_at(tmp_path, instant, "save")
    assert result.returncode == -signal.SIGKILL, result.stderr
    run = nde_lab.open_run(done, full_check=True)
    assert run.groups == ["metrics"] and float(run.metrics["loss"][0]) == 2.0
    assert list_runs(tmp_path).iloc[0]["status"] == "complete"
    removed = nde_lab.gc(tmp_path)
    assert removed, "the interrupted save left something to collect"
    run.save("added", xr.Dataset({"z": ("x", np.arange(3.0))}))
    assert nde_lab.open_run(done).group("added")["z"].values.tolist() == [0.0, 1.0, 2.0]
    time.sleep(0)
