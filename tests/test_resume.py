"""Exact resume and runs that build on runs, through the real command in subprocesses.

A shuffled spiral fit (random windows drawn with replacement) is SIGKILLed at the start of epoch 2
(after epoch 1's checkpoint) by a user callback; `nde-lab fit --resume` must end bit-identical to an
uninterrupted run, with every epoch's metrics exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from cli import RECIPES, REPO, run_cli, runs_in

import nde_lab
from nde_lab.cli import main
from nde_lab.safety import import_policy

EPOCHS = 4
KILLER = '''
import os
import signal

import lightning as L


class KillAtEpoch(L.Callback):
    """SIGKILL this process when `epoch` starts, if $KILL_FIT is set (a crash, not a clean exit)."""

    def __init__(self, epoch: int = 2) -> None:
        super().__init__()
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch and os.environ.get("KILL_FIT"):
            os.kill(os.getpid(), signal.SIGKILL)
'''


def _env(extra_path, **extra) -> dict[str, str]:
    paths = [str(REPO / "tests"), str(extra_path), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **extra}
    env.pop("NDE_LAB_STORE", None)
    return env


def _start(args: list[str], mods, **extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "nde_lab", *args], env=_env(mods, **extra), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


@pytest.fixture(scope="module")
def shuffled(tmp_path_factory):
    """An uninterrupted run `full` and a run `killed` at the start of epoch 2, of the same shuffled recipe."""
    root = tmp_path_factory.mktemp("resume")
    (root / "mods").mkdir()
    (root / "mods" / "fit_killer.py").write_text(KILLER)
    recipe = (RECIPES / "spiral_node.yaml").read_text()
    recipe = recipe.replace("  max_epochs: 40\n", f"  max_epochs: {EPOCHS}\n  callbacks:\n"
                            "    - class_path: fit_killer.KillAtEpoch\n      init_args: {epoch: 2}\n")
    recipe = recipe.replace("windows_per_batch: 60", "windows_per_batch: 16").replace("batches_per_epoch: 100", "batches_per_epoch: 5")
    recipe = recipe.replace("output_points: 500", "output_points: 50")
    path = root / "shuffled.yaml"
    path.write_text("allow_import: [fit_killer]\n" + recipe)
    store = root / "store"
    full = _start(["fit", "--config", str(path), "--store", str(store), "--run_name", "full"], root / "mods")
    killed = _start(["fit", "--config", str(path), "--store", str(store), "--run_name", "killed"], root / "mods", KILL_FIT="1")
    (code_full, err_full), (code_killed, err_killed) = _finish(full), _finish(killed)
    assert code_full == 0, err_full[-3000:]
    assert code_killed == -signal.SIGKILL, err_killed[-3000:]
    return store / "shuffled", root / "mods"


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]


def test_a_killed_fit_resumes_bit_identical_to_an_uninterrupted_one(shuffled):
    experiment, mods = shuffled
    killed = experiment / ".killed.partial"
    assert killed.is_dir() and (killed / "checkpoints" / "last.ckpt").is_file()  # periodic checkpoint survived
    assert torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    out = run_cli("fit", "--resume", str(experiment / "killed"), "--allow_import", "fit_killer", "--run_name", "resumed",
                  store=None, extra_path=mods)
    assert out.returncode == 0, out.stderr[-3000:]
    full, resumed = nde_lab.open_run(experiment / "full"), nde_lab.open_run(experiment / "resumed")
    a, b = _weights(full.path), _weights(resumed.path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    xr.testing.assert_identical(full.trajectories.load(), resumed.trajectories.load())
    assert list(resumed.metrics["epoch"].values) == list(range(EPOCHS))
    xr.testing.assert_identical(full.metrics.drop_vars("wall_time").load(), resumed.metrics.drop_vars("wall_time").load())
    assert resumed.attrs["parent_run_id"] == "killed" and resumed.attrs["lineage"] == "resume"
    assert (resumed.path / "sources" / "fit_killer.py").read_text() == KILLER  # provenance: the user module's source
    assert resumed.attrs["user_sources"] == ["fit_killer"] and "torch_deterministic" in resumed.attrs


def test_from_run_evaluates_and_continues_a_run_and_links_the_parent(shuffled):
    experiment, mods = shuffled
    parent = nde_lab.open_run(experiment / "full")
    jobs = {
        sub: _start([sub, "--from_run", str(experiment / ("latest" if sub == "predict" else "full")), "--run_name",
                     f"{sub}-child", "--allow_import", "fit_killer"], mods)
        for sub in ("validate", "test", "predict")
    }
    jobs["fit"] = _start(["fit", "--from_run", str(experiment / "full"), "--run_name", "fit-child", "--allow_import",
                          "fit_killer", "--trainer.max_epochs", str(EPOCHS + 1)], mods)
    for sub, job in jobs.items():
        code, err = _finish(job)
        assert code == 0, (sub, err[-3000:])
        child = nde_lab.open_run(experiment / f"{sub}-child")
        assert child.attrs["parent_run_id"] in ("full", "resumed") and child.attrs["lineage"] == "from_run"
        assert child.attrs["subcommand"] == sub
        history = child.metrics
        if sub == "fit":  # continued training: one more epoch after the parent's, history carried forward
            assert list(history["epoch"].values) == list(range(EPOCHS + 1))
            np.testing.assert_array_equal(history["train_loss"].values[:EPOCHS], parent.metrics["train_loss"].values)
        else:  # the evaluated model is the parent's: the same stored outputs, and its history comes along
            np.testing.assert_array_equal(child.trajectories["y"].values, parent.trajectories["y"].values)
            assert history.sizes["epoch"] == EPOCHS + (sub != "predict")
            np.testing.assert_array_equal(history["train_loss"].values[:EPOCHS], parent.metrics["train_loss"].values)
        if sub == "validate":
            assert float(history["val_mae"][-1]) == pytest.approx(float(parent.metrics["val_mae"][-1]), rel=1e-5)


def test_resume_refuses_a_complete_run_and_from_run_a_missing_one(shuffled, tmp_path, capsys):
    experiment, _ = shuffled
    with import_policy():
        assert main(["fit", "--resume", str(experiment / "full")]) == 2
        assert "is complete; there is nothing to resume" in capsys.readouterr().err
        assert main(["predict", "--from_run", str(tmp_path / "nowhere" / "latest")]) == 2
        assert "nowhere" in capsys.readouterr().err
        assert main(["predict", "--resume", str(experiment / "full")]) == 2
        assert "applies to 'nde-lab fit' only" in capsys.readouterr().err


def test_sigterm_during_fit_exits_non_zero_and_leaves_a_failed_resumable_run(tmp_path):
    store = tmp_path / "s"
    job = _start(["fit", "--config", str(RECIPES / "spiral_node.yaml"), "--trainer.max_epochs", "1000",
                  "--data.init_args.batches_per_epoch", "3", "--store", str(store), "--run_name", "preempted"], tmp_path)
    deadline = time.monotonic() + 300
    checkpoint = store / "spiral_node" / ".preempted.partial" / "checkpoints" / "last.ckpt"
    while not checkpoint.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), job.communicate()[1][-3000:]
    job.send_signal(signal.SIGTERM)
    code, err = _finish(job, timeout=120)
    assert code != 0 and "SIGTERM" in err, err[-3000:]
    (run_dir,) = runs_in(store)
    attrs = zarr.open_group(str(run_dir / "run.zarr"), mode="r").attrs
    assert run_dir.name == "preempted" and attrs["status"] == "failed" and "SIGTERM" in attrs["failure"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()  # resumable with nde-lab fit --resume
