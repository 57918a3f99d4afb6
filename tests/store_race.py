"""Concurrent `RunWriter`s in separate processes, released together (shared by the store race tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["race"]

ROOT = Path(__file__).resolve().parents[1]

# Each writer imports the store, says READY, waits for GO on stdin, then claims and completes its run.
_WRITER = """
import sys
import xarray as xr
from nde_lab.errors import RunConflictError
from nde_lab.store import RunWriter
print("READY", flush=True)
sys.stdin.readline()
try:
    writer = RunWriter(sys.argv[1], "exp", sys.argv[2])
    writer.begin(recipe_yaml="", seed=0)
    writer.complete({"metrics": xr.Dataset({"loss": ("epoch", [1.0])})})
    print("WON", flush=True)
except RunConflictError as err:
    print("CONFLICT", err, flush=True)
"""


def race(store: str | Path, names: list[str], timeout: float = 120) -> list[str]:
    """Start one writer process per entry of `names` (run names in experiment `exp` of `store`),
    release them at once when all are imported, and return each one's output ('WON' or
    'CONFLICT <message>'; a crash's
    traceback), in the order of `names`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(store), name], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
    try:
        for proc in procs:
            ready = proc.stdout.readline()
            assert ready.strip() == "READY", (ready, proc.stderr.read() if proc.poll() is not None else "")
        for proc in procs:  # release all writers together
            proc.stdin.write("GO\n")
            proc.stdin.flush()
        outs = [proc.communicate(timeout=timeout) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    # a writer that crashed says neither: its traceback is kept for the assertion message
    return [out if ("WON" in out or "CONFLICT" in out) else out + err for out, err in outs]
