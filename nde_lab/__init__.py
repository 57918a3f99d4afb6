"""nde-lab: neural differential equations and generative models, from a recipe to an xarray run."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "gc", "list_runs", "open_run", "open_sweep"]


def __getattr__(name: str):
    # Lazy: `import nde_lab` stays cheap (no torch/lightning import) until a run is opened.
    if name in {"open_run", "list_runs", "Run"}:
        from nde_lab import run

        return getattr(run, name)
    if name == "gc":
        from nde_lab.store.catalog import gc

        return gc
    if name == "open_sweep":
        from nde_lab.sweep.record import open_sweep

        return open_sweep
    raise AttributeError(f"module 'nde_lab' has no attribute {name!r}")
