"""The store's catalogue: every run with its state, the newest complete run, and garbage collection.

A run's state comes from the store alone: `complete`/`failed` from its manifest (checked against
the files), `running` or `dead` from the lock of a `.partial` directory, `damaged` (with the reason)
for a run that disagrees with its manifest or has none. One bad run never stops a listing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nde_lab.errors import StoreError
from nde_lab.store.layout import CONFIG_FILE, PARTIAL_SUFFIX, ZARR_NAME
from nde_lab.store.location import Location, locate
from nde_lab.store.lock import LOCK, is_alive
from nde_lab.store.manifest import MANIFEST, verify

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RunState", "gc", "latest", "list_runs", "run_state"]

COLUMNS = ["experiment", "run_id", "status", "reason", "created", "model_family", "final_loss", "metric", "value",
           "parent", "partial", "path"]


@dataclass
class RunState:
    """What the store says about one run directory."""

    location: Location
    status: str  # complete | failed | running | dead | damaged
    reason: str = ""
    created: str = ""
    manifest: dict[str, Any] | None = None

    @property
    def partial(self) -> bool:
        return self.location.name.endswith(PARTIAL_SUFFIX)

    @property
    def run_id(self) -> str:
        name = self.location.name
        return name[1:].removesuffix(PARTIAL_SUFFIX) if self.partial else name


def _lock_state(lock: Location) -> tuple[str, str, str]:
    try:
        record = lock.read_json()
    except FileNotFoundError:
        return "dead", "no writer lock", ""
    except ValueError:
        return "dead", "unreadable writer lock", ""
    alive, why = is_alive(record)
    return ("running" if alive else "dead"), why, str(record.get("created", record.get("started", "")))


def run_state(location: Location) -> RunState:
    """The state of the run directory at `location`; never raises for a bad run."""
    from nde_lab.store.reader import read_manifest

    try:
        if location.name.endswith(PARTIAL_SUFFIX):
            status, reason, created = _lock_state(location / LOCK)
            return RunState(location, status, reason, created)
        manifest = read_manifest(location)
        if manifest is None:
            partial = location.parent / f".{location.name}{PARTIAL_SUFFIX}"
            if partial.exists():  # an object-store upload in progress (or killed)
                status, reason, created = _lock_state(partial / LOCK)
                return RunState(location, status, f"uploading: {reason}", created)
            return RunState(location, "damaged", f"no {MANIFEST}: never committed")
        verify(location, manifest, location.files())
        return RunState(location, str(manifest.get("status")), str(manifest.get("failure", "")),
                        str(manifest.get("created", "")), manifest)
    except Exception as err:
        return RunState(location, "damaged", f"{type(err).__name__}: {err}")


def _runs(store: Location) -> list[tuple[str, Location]]:
    # `_`-prefixed entries (`_sweeps/`, sweep records and locks) are never runs: run names start with a letter or digit
    return [(exp.name, run) for exp in store.children() if not exp.name.startswith(".")
            for run in exp.children() if not run.name.startswith("_")]


def list_runs(store: str | os.PathLike | Location | None = None) -> pd.DataFrame:
    """One row per run in the store: experiment, run_id, status (complete, failed, running, dead,
    damaged), reason, created, model_family, final_loss, the family's headline `metric` and its `value`
    (nde_lab/headline.py), parent, partial, path."""
    import pandas as pd

    rows = []
    for experiment, run in _runs(locate(store)):
        state = run_state(run)
        family, loss, headline, parent = None, float("nan"), {"metric": "", "value": float("nan")}, ""
        if state.manifest is not None:
            try:
                attrs = (run / ZARR_NAME / "zarr.json").read_json().get("attributes", {})
                family, parent = attrs.get("model_family"), attrs.get("parent") or attrs.get("resumed_from") or ""
                if state.status == "complete" and "metrics" in state.manifest.get("groups", []):
                    loss = _final_loss(run)
                if state.status == "complete":
                    headline = _headline(run, attrs)
            except Exception as err:
                state.status, state.reason = "damaged", f"{type(err).__name__}: {err}"
        rows.append({"experiment": experiment, "run_id": state.run_id, "status": state.status, "reason": state.reason,
                     "created": state.created, "model_family": family, "final_loss": loss, **headline, "parent": parent,
                     "partial": state.partial,
                     "path": str(run.local_path) if run.is_local else run.url})
    return pd.DataFrame(rows, columns=COLUMNS)


def _headline(run: Location, attrs: dict[str, Any]) -> dict[str, Any]:
    """The family's headline metric {"metric": label, "value": number} (nde_lab/headline.py)."""
    from nde_lab.headline import headline_metric, run_reader
    from nde_lab.store.reader import StoredRun

    metric, value = headline_metric(attrs, run_reader(StoredRun(run)))
    return {"metric": metric, "value": value}


def _final_loss(run: Location) -> float:
    """The last finite training objective in `metrics` (train_loss, else loss, else the first *_loss,
    else train_nll, else minus train_elbo)."""
    from nde_lab.store.reader import StoredRun

    metrics = StoredRun(run).group("metrics")
    with metrics:
        names = [n for n in ("train_loss", "loss") if n in metrics] or sorted(n for n in metrics if str(n).endswith("loss"))
        names = names or [n for n in ("train_nll", "val_nll", "train_elbo", "val_elbo") if n in metrics]
        if not names:
            return float("nan")
        sign = -1.0 if str(names[0]).endswith("elbo") else 1.0
        values = sign * np.asarray(metrics[names[0]].values, dtype=float)
        finite = values[np.isfinite(values)]
        return float(finite[-1]) if finite.size else float("nan")


def latest(experiment: Location) -> Location:
    """The newest complete (and intact) run of an experiment by creation time."""
    if not experiment.is_dir():
        raise StoreError(f"no experiment directory {experiment.url!r}; list the store with nde_lab.list_runs().")
    runs = [run_state(run) for run in experiment.children() if not run.name.startswith(".")]
    complete = [s for s in runs if s.status == "complete"]
    if not complete:
        raise StoreError(f"experiment {experiment.url!r} has no complete run ({len(runs)} run(s) in total).")
    return max(complete, key=lambda s: (s.created, s.location.name)).location


def gc(store: str | os.PathLike | Location | None = None, *, dry_run: bool = False) -> list[dict[str, str]]:
    """Remove dead leftovers: `.partial` directories whose writer is gone, uncommitted run directories
    of interrupted uploads, stale locks and staging of interrupted saves, group directories no
    manifest lists. Live writers and committed runs are never touched. Returns what was (or, with
    `dry_run`, would be) removed: [{"path", "reason"}]."""
    from nde_lab.store.save import STAGING

    removed = []

    def remove(location: Location, reason: str) -> None:
        removed.append({"path": location.url, "reason": reason})
        if not dry_run:
            location.remove()

    for _, run in _runs(locate(store)):
        state = run_state(run)
        if state.partial:
            if state.status == "dead":
                remove(run, f"dead writer: {state.reason}")
            continue
        if state.manifest is None:
            if state.status == "dead" or (state.status == "damaged" and (run / CONFIG_FILE).exists()):
                remove(run, f"uncommitted run: {state.reason}")
            continue
        if (run / LOCK).exists():
            remove(run / LOCK, "stale writer lock of a committed run")
        staging = run / STAGING
        if staging.exists():
            try:
                saving = is_alive((staging / "save.lock").read_json())[0]
            except (OSError, ValueError):
                saving = False
            if saving:
                continue  # a live save: its staging and its new group are not leftovers
            remove(staging, "staging of an interrupted save")
        listed = set(state.manifest.get("groups", []))
        for group in (run / ZARR_NAME).children():
            if group.name not in listed and not group.name.startswith("."):
                remove(group, "group of an interrupted save (not in the manifest)")
    return removed
