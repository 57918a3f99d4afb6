"""`run_sweep`: validate a grid, run every missing point as an ordinary run, write the sweep record."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from nde_lab import __version__
from nde_lab.errors import RecipeError
from nde_lab.sweep.conclusions import compute_conclusions, validate_conclusions
from nde_lab.sweep.executors import Executor, make_executor
from nde_lab.sweep.grid import Grid, Point
from nde_lab.sweep.point import PointTask, settled_status
from nde_lab.sweep.record import SWEEPS_DIR, Sweep, build_record, run_scalars, write_record
from nde_lab.sweep.validate import validate_grid

__all__ = ["plan_sweep", "run_sweep"]


def _as_text(value: Any) -> str:
    """A grid value as it would be typed after `--key` on the fit command line."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


class SweepPlan:
    """A validated sweep: recipe, grid, names and the task of every point (nothing has run)."""

    def __init__(self, recipe: Path, grid: Grid, store: Path, experiment: str, name: str,
                 extra: list[str], conclusions: dict[str, Any], identity: str = "") -> None:
        self.recipe, self.grid, self.store, self.experiment, self.name = recipe, grid, store, experiment, name
        self.extra, self.conclusions, self.identity = extra, conclusions, identity
        self.points: list[Point] = grid.points(name)

    @property
    def record_path(self) -> Path:
        return self.store / self.experiment / SWEEPS_DIR / f"{self.name}.zarr"

    @property
    def identity_path(self) -> Path:
        """`<name>.identity`: the hash of the recipe text and shared arguments the sweep's points were made
        from, written before the first point runs. (Grid values and seeds may grow under one name: a point
        is its grid index, seed and overrides, each recorded in its run's config.)"""
        return self.store / self.experiment / SWEEPS_DIR / f"{self.name}.identity"

    def check_identity(self) -> None:
        """Refuse to resume a sweep of this name that was made from another recipe text or other shared
        arguments: its settled points would be mixed, unseen, into the new sweep's record."""
        if not self.identity_path.is_file():
            return
        stored = self.identity_path.read_text().strip()
        if stored != self.identity:
            raise RecipeError(
                f"sweep {self.name!r} of experiment {self.experiment!r} in {self.store} was made from another recipe "
                f"text or other shared fit arguments (identity {stored}, now {self.identity}): resuming it would mix its "
                f"finished points with the new ones. Give another --name (or remove the old sweep's "
                f"runs and {self.identity_path}).")

    def claim_identity(self) -> None:
        """Record the sweep's identity (checked first: never overwrites another sweep's)."""
        self.check_identity()
        self.identity_path.parent.mkdir(parents=True, exist_ok=True)
        self.identity_path.write_text(self.identity + "\n")

    def task(self, point: Point) -> PointTask:
        return PointTask(recipe=str(self.recipe), store=str(self.store), experiment=self.experiment,
                         run_name=point.run_name, overrides=point.overrides, extra_args=tuple(self.extra),
                         lock_dir=str(self.store / self.experiment / SWEEPS_DIR / "locks"))

    def missing(self) -> list[Point]:
        """Points without a settled run in the store (what a resumed sweep runs)."""
        return [p for p in self.points if settled_status(self.task(p).run_dir) is None]


def plan_sweep(recipe: str | os.PathLike, grid: Mapping[str, Sequence[Any]] | None = None, *, seeds: int = 1,
               store: str | os.PathLike | None = None, experiment: str | None = None, name: str | None = None,
               extra_args: Sequence[str] = ()) -> SweepPlan:
    """Validate everything a sweep needs (RecipeError naming the problem) without running anything."""
    from nde_lab.store.layout import resolve_store, validate_name

    path = Path(recipe).expanduser().resolve()
    if not path.is_file():
        raise RecipeError(f"--config {recipe}: no such recipe file.")
    values = {str(k): [_as_text(v) for v in vs] for k, vs in (grid or {}).items()}
    for key, vs in values.items():
        if not vs:
            raise RecipeError(f"grid key {key!r} has no values.")
    if not values and seeds < 2:
        raise RecipeError("empty sweep: give at least one --grid KEY=V1,V2,... or --seeds N with N >= 2.")
    text = path.read_text()
    try:
        conclusions = validate_conclusions((yaml.safe_load(text) or {}).get("conclusions"))
    except yaml.YAMLError as err:
        raise RecipeError(f"{recipe}: not valid YAML ({err}).") from None
    extra = [str(a) for a in extra_args]
    checked = validate_grid(str(path), values, seeds, extra)
    experiment = validate_name(experiment or path.stem, "experiment name")
    name = validate_name(name or f"sweep-{checked.identity(text + json.dumps(extra))}", "sweep name")
    identity = hashlib.sha256(json.dumps({"recipe": text, "extra_args": extra}).encode()).hexdigest()[:12]
    plan = SweepPlan(path, checked, resolve_store(store), experiment, name, extra, conclusions, identity)
    plan.check_identity()
    return plan


def _row(plan: SweepPlan, point: Point, result: dict[str, Any] | None) -> dict[str, Any]:
    task = plan.task(point)
    settled = settled_status(task.run_dir)
    run = {"run_name": point.run_name, "run_path": str(task.run_dir) if settled else "",
           "seconds": (result or {}).get("seconds", 0.0)}
    if settled is not None:
        run["status"], run["failure"] = settled
    elif result is not None:
        run["status"], run["failure"] = result["status"], result["failure"]
    else:
        run["status"], run["failure"] = "missing", ""
    scalars: dict[str, float] = {}
    if run["status"] == "complete":
        from nde_lab.run import open_run

        scalars = run_scalars(open_run(task.run_dir).tree)
        scalars.update({f"conclusions.{k}": v for k, v in
                        compute_conclusions(plan.conclusions, str(task.run_dir), scalars).items()})
    return {"index": (*point.index, point.seed), "run": run, "scalars": scalars}


def run_sweep(recipe: str | os.PathLike, grid: Mapping[str, Sequence[Any]] | None = None, *, seeds: int = 1,
              executor: Executor | str = "local", workers: int = 1, scheduler: str | None = None,
              store: str | os.PathLike | None = None, experiment: str | None = None, name: str | None = None,
              extra_args: Sequence[str] = (), retries: int = 2) -> Sweep:
    """Run `recipe` over `grid` x `seeds` (each point an ordinary run) and write the sweep record.

    Main arguments:
        recipe: the recipe YAML.
        grid: dotted recipe key -> values, e.g. {"model.init_args.vector_field.init_args.width": [16, 64]}.
        seeds: seed indices; index s sets every seed of the recipe to its value + s.
        executor: "local" (a pool of `workers` processes), "dask" (`scheduler` address or a LocalCluster),
            or an `Executor`.

    Other arguments:
        store, experiment: where the runs and the record go (default store, the recipe's file name).
        name: the sweep's name (default `sweep-<hash of recipe, grid, seeds, extra_args>`); rerunning the
            same sweep resumes it: points with a settled run are not run again. A name already used by a
            sweep of another recipe text or other extra_args is refused (RecipeError), never mixed.
        extra_args: fit arguments shared by every point (e.g. ["--trainer.max_epochs", "1"]).
        retries: Dask retries of a point whose task raised.

    Returns the `Sweep` record (`sweep.attrs["n_failed"]` counts failed points).
    Raises RecipeError (bad recipe, key or value) or SchedulerUnreachable before anything runs.
    """
    owned = isinstance(executor, str)
    # connect first: an unreachable scheduler fails within seconds, before the recipe is even parsed
    ex = make_executor(executor, workers=workers, scheduler=scheduler, retries=retries) if owned else executor
    try:
        plan = plan_sweep(recipe, grid, seeds=seeds, store=store, experiment=experiment, name=name,
                          extra_args=extra_args)
    except BaseException:
        if owned:
            ex.close()
        raise
    try:
        plan.claim_identity()
    except BaseException:
        if owned:
            ex.close()
        raise
    todo = plan.missing()
    print(f"nde-lab sweep: {plan.name}: {len(plan.points)} point(s), {len(plan.points) - len(todo)} already in the "
          f"store, running {len(todo)} -> {plan.store / plan.experiment}", file=sys.stderr)
    by_name = {p.run_name: p for p in todo}

    def progress(result: dict[str, Any]) -> None:
        why = f": {result['failure']}" if result["status"] != "complete" else ""
        print(f"nde-lab sweep: {result['run_name']} {result['status']} ({result['seconds']:.1f} s){why}", file=sys.stderr)

    try:
        results = {r["run_name"]: r for r in ex.run([plan.task(p) for p in by_name.values()], progress)}
    finally:
        if owned:
            ex.close()
    rows = [_row(plan, p, results.get(p.run_name)) for p in plan.points]
    n_complete = sum(r["run"]["status"] == "complete" for r in rows)
    from nde_lab.store.attrs import now_iso

    attrs = {
        "kind": "nde_lab.sweep", "sweep_name": plan.name, "experiment": plan.experiment, "store": str(plan.store),
        "recipe": str(plan.recipe), "recipe_text": plan.recipe.read_text(),
        "keys": json.dumps(plan.grid.dims and {d: k for k, d in plan.grid.dims.items()}),
        "seeds": plan.grid.seeds, "seed_keys": json.dumps(list(plan.grid.seed_keys)) if plan.grid.seeds > 1 else "[]",
        "extra_args": json.dumps(plan.extra), "conclusions": json.dumps(plan.conclusions),
        "status": "complete" if n_complete == len(rows) else "incomplete", "n_points": len(rows),
        "n_complete": n_complete, "n_failed": len(rows) - n_complete, "updated": now_iso(),
        "nde_lab_version": __version__,
    }
    write_record(plan.record_path, attrs, build_record(attrs, plan.grid.coords(), rows))
    print(f"nde-lab sweep: record {plan.record_path} ({n_complete}/{len(rows)} complete)", file=sys.stderr)
    return Sweep(plan.record_path)
