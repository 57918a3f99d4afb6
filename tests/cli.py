"""Run the real `nde-lab` command in a subprocess (shared by the end-to-end tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"


def run_cli(
    *args: str, store: Path | None, timeout: float = 600, cwd: Path | None = None, env_store: Path | None = None,
    extra_path: Path | None = None,
) -> subprocess.CompletedProcess:
    """`nde-lab <args> --store <store>` with tests/ (and `extra_path`) importable (for user-written fields).

    With `store=None` no --store is passed; `env_store` then sets $NDE_LAB_STORE.
    """
    paths = [str(REPO / "tests"), *([str(extra_path)] if extra_path else []), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONWARNINGS": "ignore"}
    env.pop("NDE_LAB_STORE", None)
    if env_store is not None:
        env["NDE_LAB_STORE"] = str(env_store)
    store_args = [] if store is None else ["--store", str(store)]
    return subprocess.run(
        [sys.executable, "-m", "nde_lab", *args, *store_args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd or REPO,
    )


def runs_in(store: Path) -> list[Path]:
    """Every run directory (visible or partial) under a store."""
    if not store.exists():
        return []
    return sorted(p for exp in store.iterdir() if exp.is_dir() for p in exp.iterdir() if p.is_dir())
