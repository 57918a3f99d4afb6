"""The RUN argument of `nde-lab show` and `nde-lab plot`: a run directory, a URL, or `experiment/latest`
(or `experiment/run_id`) inside the store (`--store`, else $NDE_LAB_STORE, else ./store)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["EXIT_BAD_INPUT", "add_run_arguments", "open_run_arg"]

EXIT_BAD_INPUT = 2


def add_run_arguments(parser: Any) -> None:
    parser.add_argument("run", metavar="RUN",
                        help="a run directory, a URL, or EXPERIMENT/latest (or EXPERIMENT/RUN_ID) in the store")
    parser.add_argument("--store", default=None, help="run store root (default: $NDE_LAB_STORE or ./store)")


def _candidates(run: str, store: str | None) -> list[str]:
    if "://" in run:
        return [run]
    path = Path(run).expanduser()
    if path.is_absolute() or path.exists() or (path.parent.exists() and store is None and not os.environ.get("NDE_LAB_STORE")):
        return [str(path)]
    from nde_lab.store.layout import resolve_store

    return [str(resolve_store(store) / run), str(path)]


def open_run_arg(run: str, store: str | None) -> Any:
    """The opened run (failed and running runs included), or None after printing why (exit 2)."""
    import nde_lab

    errors = []
    for candidate in _candidates(run, store):
        try:
            return nde_lab.open_run(candidate, allow_incomplete=True)
        except Exception as err:  # the store names what is wrong; report every place tried
            errors.append(f"{candidate}: {err}")
    print(f"nde-lab: error: no run {run!r}:\n  " + "\n  ".join(errors)
          + "\n  list the runs with `nde-lab runs`.", file=sys.stderr)
    return None
