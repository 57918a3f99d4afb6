"""`RunWriter`: assembles a run away from its final name and makes it visible only when it is settled."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import xarray as xr
import zarr

from nde_lab import __version__
from nde_lab.errors import StoreError
from nde_lab.store.attrs import jsonable, library_versions, now_iso
from nde_lab.store.layout import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    ZARR_NAME,
    new_run_id,
    partial_name,
    resolve_store,
    validate_name,
)

__all__ = ["RunWriter", "write_tree"]


def write_tree(groups: dict[str, xr.Dataset], path: Path, attrs: dict[str, Any]) -> None:
    """Write `groups` as one DataTree in Zarr v3 at `path` (replacing it), root attrs `attrs`.

    Metadata is not consolidated: the root's `status` attr is rewritten in place when a run settles,
    and consolidated metadata would keep the stale value.
    """
    for name, dataset in groups.items():
        validate_name(name, "group")
        if not isinstance(dataset, xr.Dataset):
            raise TypeError(f"run group {name!r} must be an xarray.Dataset, got {type(dataset).__name__}.")
    tree = xr.DataTree.from_dict({"/": xr.Dataset(attrs=jsonable(attrs)), **{f"/{k}": v for k, v in groups.items()}})
    for node in tree.subtree:
        node.attrs = jsonable(dict(node.attrs))
        for var in node.variables.values():
            var.attrs = jsonable(dict(var.attrs))
    tree = tree.map_over_datasets(_variable_length_strings)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        tree.to_zarr(path, mode="w", zarr_format=3, consolidated=False)


def _variable_length_strings(ds: xr.Dataset) -> xr.Dataset:
    """Fixed-width numpy strings have no Zarr v3 specification; store them as variable-length UTF-8."""
    fixed = [name for name, var in ds.variables.items() if var.dtype.kind == "U"]
    return ds.assign_coords({n: ds[n].astype(object) for n in fixed if n in ds.coords}).assign(
        {n: ds[n].astype(object) for n in fixed if n in ds.data_vars}
    )


def _set_root_attrs(path: Path, **attrs: Any) -> None:
    group = zarr.open_group(str(path), mode="r+", zarr_format=3)
    group.attrs.update(jsonable(attrs))


class RunWriter:
    """One run's life: `begin` (status running, hidden), then `complete` or `fail` (visible, settled).

    Layout: `<store>/<experiment>/<run_id>/` with `config.yaml`, `checkpoints/` and `run.zarr`.
    While running, the directory is `<store>/<experiment>/.<run_id>.partial/`; it is renamed to its
    final name only after `run.zarr` holds every group and its root `status` is `complete` (or
    `failed` with `failure`), so no visible run ever looks complete without being so.
    """

    def __init__(self, store: str | os.PathLike | None, experiment: str, run_name: str | None = None) -> None:
        self.store = resolve_store(store)
        self.experiment = validate_name(experiment, "experiment name")
        self.run_id = validate_name(run_name, "run name") if run_name is not None else new_run_id()
        self.final_dir = self.store / self.experiment / self.run_id
        self.work_dir = self.store / self.experiment / partial_name(self.run_id)
        if self.final_dir.exists() or self.work_dir.exists():
            raise StoreError(f"run {self.final_dir} already exists; choose another run name (earlier runs are never overwritten).")
        self.attrs: dict[str, Any] = {}
        self.settled = False

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / CHECKPOINT_DIR

    @property
    def zarr_path(self) -> Path:
        return self.work_dir / ZARR_NAME

    def begin(self, *, recipe_yaml: str, seed: int | None, extra: dict[str, Any] | None = None) -> None:
        """Create the hidden run directory with its config and a root marked `running`."""
        self.work_dir.mkdir(parents=True)
        self.checkpoint_dir.mkdir()
        (self.work_dir / CONFIG_FILE).write_text(recipe_yaml)
        self.attrs = {
            "status": "running",
            "failure": "",
            "created": now_iso(),
            "experiment": self.experiment,
            "run_id": self.run_id,
            "nde_lab_version": __version__,
            "library_versions": library_versions(),
            "seed": seed,
            "recipe": recipe_yaml,
            "model_family": "unknown",
            **(extra or {}),
        }
        write_tree({}, self.zarr_path, self.attrs)

    def complete(self, groups: dict[str, xr.Dataset], attrs: dict[str, Any] | None = None) -> Path:
        """Write every group, then set status `complete` last, then make the run visible."""
        self.attrs.update(attrs or {})
        write_tree(groups, self.zarr_path, {**self.attrs, "status": "running", "finished": now_iso()})
        _set_root_attrs(self.zarr_path, status="complete")
        self.attrs["status"] = "complete"
        return self._publish()

    def fail(self, reason: str, groups: dict[str, xr.Dataset] | None = None, attrs: dict[str, Any] | None = None) -> Path:
        """Mark the run `failed` with `reason` (keeping what is safe to keep) and make it visible."""
        self.attrs.update(attrs or {})
        self.attrs.update(status="failed", failure=reason, finished=now_iso())
        try:
            write_tree(groups or {}, self.zarr_path, self.attrs)
        except Exception:  # the failure itself may come from the data: keep at least the root
            shutil.rmtree(self.zarr_path, ignore_errors=True)
            write_tree({}, self.zarr_path, self.attrs)
        return self._publish()

    def _publish(self) -> Path:
        os.replace(self.work_dir, self.final_dir)
        self.settled = True
        return self.final_dir
