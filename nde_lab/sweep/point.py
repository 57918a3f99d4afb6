"""One sweep point = one ordinary `nde-lab fit` run, made idempotent.

`run_point(task)` (what every executor calls, in a thread or on a Dask worker) starts
`python -m nde_lab.sweep.point --lock L --parent PID -- fit ... --run_name NAME` with one torch thread.
That wrapper process:
  1. dies with its launcher (Linux `PR_SET_PDEATHSIG`): a lost Dask worker takes its fit with it;
  2. takes an exclusive `flock` on the point's lock file, so a retry waits until an earlier attempt's
     process is gone (the OS drops the lock only when that process is dead);
  3. skips the point if a settled run (complete or failed) with that name exists, else removes a
     stale hidden partial of a dead attempt and runs `fit` in-process.
Runs become visible only when settled (the store renames them atomically), so a point is either
absent, or one complete/failed run; a retried point never duplicates.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PointTask", "run_point", "settled_status"]

#: Exit statuses of `nde-lab fit`.
EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2


@dataclass(frozen=True)
class PointTask:
    """Everything a worker needs to run one point (picklable, paths absolute)."""

    recipe: str
    store: str
    experiment: str
    run_name: str
    overrides: tuple[tuple[str, str], ...]
    extra_args: tuple[str, ...] = ()
    lock_dir: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return Path(self.store) / self.experiment / self.run_name

    def fit_argv(self) -> list[str]:
        args = ["fit", "--config", self.recipe, *self.extra_args]
        for key, value in self.overrides:
            args += [f"--{key}", value]
        return [*args, "--store", self.store, "--experiment", self.experiment, "--run_name", self.run_name]


def settled_status(run_dir: Path) -> tuple[str, str] | None:
    """(status, failure) of a committed run (complete or failed) at `run_dir`, else None."""
    if not Path(run_dir).exists():
        return None
    from nde_lab.store.catalog import run_state
    from nde_lab.store.location import locate

    state = run_state(locate(str(run_dir)))
    return (state.status, state.reason) if state.status in ("complete", "failed") else None


def run_point(task: PointTask, timeout: float | None = None) -> dict[str, Any]:
    """Run one point in its own process; returns {run_name, status, failure, returncode, seconds, ran}.

    `status` is the run's (`complete`/`failed`), or `failed` with the CLI's message when no run was
    created (bad input). `ran` is False when a settled run already existed (resume).
    """
    start = time.perf_counter()
    already = settled_status(task.run_dir)
    if already is not None:
        return {"run_name": task.run_name, "status": already[0], "failure": already[1], "returncode": 0,
                "seconds": 0.0, "ran": False}
    lock = Path(task.lock_dir or Path(task.store) / task.experiment) / f"{task.run_name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "nde_lab.sweep.point", "--lock", str(lock), "--parent", str(os.getpid()),
           "--", *task.fit_argv()]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **task.env}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    settled = settled_status(task.run_dir)
    if settled is not None:
        status, failure = settled
    else:
        status, failure = "failed", _error_line(proc.stderr) or f"fit exited {proc.returncode} without a run"
    return {"run_name": task.run_name, "status": status, "failure": failure, "returncode": proc.returncode,
            "seconds": time.perf_counter() - start, "ran": True}


def _error_line(stderr: str) -> str:
    """The CLI's error message (from its last `error:` to the end, on one line), else the last line."""
    at = stderr.rfind("error:")
    text = stderr[at + len("error:"):] if at >= 0 else (stderr.strip().splitlines() or [""])[-1]
    return " ".join(ln.strip() for ln in text.splitlines() if ln.strip())[:1000]


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its launcher dies; exit now if it already has."""
    with contextlib.suppress(OSError):  # not Linux: the lock still prevents duplicates while a stale attempt lives
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit(EXIT_RUN_FAILED)


def _remove_stale_partial(run_dir: Path) -> None:
    from nde_lab.store.layout import partial_name

    partial = run_dir.parent / partial_name(run_dir.name)
    if partial.exists():
        print(f"nde-lab sweep: removing {partial}, left by an attempt that died", file=sys.stderr)
        shutil.rmtree(partial)


def _option(argv: list[str], name: str) -> str:
    """The value after the last `name` in `argv`."""
    return argv[len(argv) - 1 - argv[::-1].index(name) + 1]


def main(argv: list[str]) -> int:
    """`python -m nde_lab.sweep.point --lock L --parent PID -- fit ...` (see the module docstring)."""
    sep = argv.index("--")
    opts, fit_argv = dict(zip(argv[:sep:2], argv[1:sep:2], strict=True)), argv[sep + 1:]
    from nde_lab.commands import main as nde_lab_main

    if os.environ.get("LOCAL_RANK", "0") != "0":  # a DDP rank > 0 re-executed by Lightning's launcher
        return nde_lab_main(fit_argv)
    _die_with_parent(int(opts["--parent"]))
    with open(opts["--lock"], "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        run_dir = Path(_option(fit_argv, "--store")).expanduser().resolve() / _option(fit_argv, "--experiment") / _option(
            fit_argv, "--run_name")
        if settled_status(run_dir) is not None:
            return EXIT_OK
        _remove_stale_partial(run_dir)
        return nde_lab_main(fit_argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
