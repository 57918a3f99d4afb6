"""Adding a group to a committed run, atomically, with where it came from.

The group is written to a staging directory (`<run>/.staging/`, or a local temporary directory for
remote runs), moved under `run.zarr/<name>` (one rename locally, an upload remotely), and committed
by rewriting `manifest.json` in one atomic write. Killed before that write, the run reads as before:
readers only see groups the manifest lists, and the next save or `gc` removes the leftovers.
Concurrent saves to one run are serialised by `<run>/.staging/save.lock` (O_EXCL; a dead holder's
lock is taken over).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import xarray as xr

from nde_lab import __version__
from nde_lab.errors import RunConflictError, RunNotReadyError, StoreError
from nde_lab.store.attrs import jsonable, library_versions, now_iso
from nde_lab.store.layout import ZARR_NAME, validate_name
from nde_lab.store.location import Location
from nde_lab.store.lock import is_alive, lock_record
from nde_lab.store.manifest import MANIFEST, ROOT_METADATA, hash_files
from nde_lab.store.schema import encode_group
from nde_lab.store.writer import upload, writing

__all__ = ["PROVENANCE_ATTR", "STAGING", "save_group"]

STAGING = ".staging"
PROVENANCE_ATTR = "nde_lab_provenance"


@contextmanager
def _save_lock(run: Location) -> Iterator[None]:
    lock = run / STAGING / "save.lock"
    if not run.is_local:  # object stores: no exclusive create here; one saver per run at a time
        yield
        return
    path = Path(lock.path)
    path.parent.mkdir(exist_ok=True)
    import json

    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}
            alive, why = is_alive(holder)
            if alive:
                raise RunConflictError(f"run {run.url!r} is being saved to by another writer ({why}).") from None
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(lock_record(uuid.uuid4().hex)))
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
        return
    raise RunConflictError(f"run {run.url!r}: could not take the save lock {path}.")


def _consolidate(run: Location) -> None:
    """Re-consolidate the run's metadata so plain `xr.open_datatree` sees the new group."""
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        zarr.consolidate_metadata((run / ZARR_NAME).zarr_store(read_only=False), zarr_format=3)


def save_group(run: Location, name: str, dataset: xr.Dataset, *, attrs: dict[str, Any] | None = None,
               overwrite: bool = False, provenance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Add `dataset` as group `name` of the complete run at `run`; returns the new manifest.

    `provenance` (function or query, seed, ...) is stored with the time and library versions in the
    group's `nde_lab_provenance` attr. Refuses an existing group unless `overwrite` (an overwrite
    first commits the run without the old group, so a kill in between loses that group, never mixes).
    """
    from nde_lab.store.reader import read_manifest

    validate_name(name, "group")
    if not isinstance(dataset, xr.Dataset):
        if isinstance(dataset, xr.DataArray):
            dataset = dataset.to_dataset(name=dataset.name or name)
        else:
            raise TypeError(f"run.save needs an xarray.Dataset or DataArray, got {type(dataset).__name__}.")
    record = jsonable({"time": now_iso(), "nde_lab_version": __version__, "library_versions": library_versions(),
                       **(provenance or {})}, PROVENANCE_ATTR)
    dataset = dataset.copy()
    dataset.attrs = {**dataset.attrs, **(attrs or {}), PROVENANCE_ATTR: record}
    encoded, encoding = encode_group(name, dataset)
    with _save_lock(run):
        manifest = read_manifest(run)
        if manifest is None or manifest.get("status") != "complete":
            raise RunNotReadyError(f"run {run.url!r} is not a complete run; results are only added to complete runs.")
        if name in manifest["groups"] and not overwrite:
            raise RunConflictError(f"run {run.url!r} already has a group {name!r}; pass overwrite=True to replace it.")
        staging_root = Path(tempfile.mkdtemp(prefix="nde-lab-save-")) if not run.is_local else Path((run / STAGING).path)
        stage = staging_root / f"{name}-{uuid.uuid4().hex[:8]}"
        try:
            with writing():
                encoded.to_zarr(stage, mode="w-", zarr_format=3, consolidated=False, encoding=encoding,
                                write_empty_chunks=True)
            prefix = f"{ZARR_NAME}/{name}/"
            files = {k: v for k, v in manifest["files"].items() if not k.startswith(prefix)}
            if name in manifest["groups"]:  # overwrite: first commit the run without the old group
                manifest = {**manifest, "files": files, "groups": [g for g in manifest["groups"] if g != name]}
                (run / MANIFEST).write_json(manifest)
            target = run / ZARR_NAME / name
            target.remove()  # an old version or the leftover of an interrupted save (not in the manifest)
            if run.is_local:
                os.rename(stage, target.path)
            else:
                upload(stage, target, manifest_last=False)
            files.update(hash_files(Path(target.path) if run.is_local else stage, prefix))
            _consolidate(run)
            files[ROOT_METADATA] = {"size": len((run / ROOT_METADATA).read_bytes())}
            manifest = {**manifest, "files": files, "groups": sorted({*manifest["groups"], name})}
            (run / MANIFEST).write_json(manifest)
        except StoreError:
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            if not run.is_local:
                shutil.rmtree(staging_root, ignore_errors=True)
    return manifest
