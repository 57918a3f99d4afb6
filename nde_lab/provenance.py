"""What a run records about where it came from: the lab's commit, the platform, determinism flags, user code.

A run that imported user modules (allowed with `--allow_import`) keeps a copy of their source under
`<run>/sources/`, so it can be reopened on a machine that lacks them: put that folder on
`PYTHONPATH` (and allow the prefix) before `open_run(...).model`.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["SOURCES_DIR", "copy_user_sources", "run_provenance"]

SOURCES_DIR = "sources"


def lab_git_commit() -> str | None:
    """The commit of the nde-lab checkout this code runs from (editable installs), else None."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def run_provenance() -> dict[str, Any]:
    """Root attrs: `lab_git_commit`, `platform`, `torch_deterministic` (flags that change results)."""
    import torch

    return {
        "lab_git_commit": lab_git_commit() or "",
        "platform": {"system": platform.platform(), "machine": platform.machine(), "python": sys.version.split()[0],
                     "torch_threads": torch.get_num_threads()},
        "torch_deterministic": {
            "use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "default_dtype": str(torch.get_default_dtype()),
        },
    }


def copy_user_sources(prefixes: Iterable[str], destination: Path) -> list[str]:
    """Copy the source files of imported modules under `prefixes` into `destination` (package layout kept).

    Returns the module names copied. Only modules already imported (by the recipe) are copied.
    """
    prefixes = [p for p in prefixes]
    copied = []
    for name, module in sorted(sys.modules.items()):
        if not any(name == p or name.startswith(p + ".") for p in prefixes):
            continue
        file = getattr(module, "__file__", None)
        if not file or not file.endswith(".py"):
            continue
        parts = name.split(".")
        is_package = Path(file).name == "__init__.py"
        relative = Path(*parts, "__init__.py") if is_package else Path(*parts[:-1], parts[-1] + ".py")
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
        copied.append(name)
    return copied
