"""`RunWriter`: assembles a run under a lock and commits it with one atomic write of its manifest.

Life of a run (docs/architecture.md, "The run store"):
1. `begin`: create `<experiment>/.<run_id>.partial/` exclusively (a second writer of the same name
   gets `RunConflictError`), write `lock.json` (pid, host, heartbeat) and `config.yaml`.
2. `complete`/`fail`: write `run.zarr` (every group, root attrs with the final status), then
   `manifest.json` (sizes and SHA-256 of every file) last, then publish: locally one rename of the
   hidden directory to `<run_id>`; on an object store, upload every file, the manifest last.
On an object store the claim in 1. is the lock itself, created by a conditional PUT (`If-None-Match: *`).
A run killed at any instant is absent, `running`/`dead` (a `.partial` with a lock), or settled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xarray as xr

from nde_lab import __version__
from nde_lab.errors import RunConflictError, StoreError
from nde_lab.store.attrs import jsonable, library_versions, now_iso
from nde_lab.store.layout import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    ZARR_NAME,
    new_run_id,
    partial_name,
    validate_name,
)
from nde_lab.store.location import Location, locate
from nde_lab.store.lock import LOCK, Heartbeat, lock_record
from nde_lab.store.manifest import MANIFEST, build_manifest
from nde_lab.store.schema import encode_group

__all__ = ["CLAIM_SETTLE_S", "UPLOAD_BATCH", "RunWriter", "upload", "write_tree", "writing"]

#: files uploaded concurrently to an object store
UPLOAD_BATCH = 16
#: seconds between claiming a run's lock on an object store and reading it back
CLAIM_SETTLE_S = 0.25


def write_tree(groups: dict[str, xr.Dataset], path: Path | str | Any, attrs: dict[str, Any]) -> None:
    """Write `groups` as one DataTree in Zarr v3 at `path` (replacing it), root attrs `attrs`.

    Attributes must be JSON (see `jsonable`); strings become variable-length UTF-8; every variable
    gets the schema's chunks and compression (`schema.encode_group`). Metadata is consolidated (for
    plain `xr.open_datatree`; the lab's reader reads each committed group's own metadata).
    """
    tree, encoding = _prepare(groups, attrs)
    with writing():
        tree.to_zarr(path, mode="w", zarr_format=3, consolidated=True, encoding=encoding, write_empty_chunks=True)


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """The settings of every write of run data: dask's local threads (never a distributed client
    the caller may have open: the chunks are written from this process) and no warning about
    consolidated metadata. Every chunk is stored, even one of fill values (`write_empty_chunks`):
    a chunk missing from a run is always damage, and Zarr skips its scan for empty chunks."""
    import dask
    import dask.threaded

    # the scheduler function, not its name "threads": for a name, dask imports `distributed` (~0.3 s
    # in every process that writes a run) only to look for a client it would then not use
    with warnings.catch_warnings(), dask.config.set(scheduler=dask.threaded.get):
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        yield


def _prepare(groups: dict[str, xr.Dataset], attrs: dict[str, Any]) -> tuple[xr.DataTree, dict[str, Any]]:
    encoded = {}
    for name, dataset in groups.items():
        validate_name(name, "group")
        if not isinstance(dataset, xr.Dataset):
            raise TypeError(f"run group {name!r} must be an xarray.Dataset, got {type(dataset).__name__}.")
        encoded[name] = encode_group(name, dataset)
    tree = xr.DataTree.from_dict(
        {"/": xr.Dataset(attrs=jsonable(attrs)), **{f"/{k}": ds for k, (ds, _) in encoded.items()}}
    )
    return tree, {f"/{k}": enc for k, (_, enc) in encoded.items()}


def upload(local: Path, remote: Location, *, manifest_last: bool = True) -> None:
    """Copy the local directory `local` to `remote` (object stores: `UPLOAD_BATCH` files at a time),
    `manifest.json` last, once everything else is there."""
    fs = remote.fs
    manifest = local / MANIFEST
    sources = [Path(folder) / name for folder, _, names in os.walk(local) for name in names
               if name != LOCK and Path(folder) / name != manifest]
    if sources:
        targets = [(remote / path.relative_to(local).as_posix()).path for path in sources]
        batch = {"batch_size": UPLOAD_BATCH} if getattr(fs, "async_impl", False) else {}
        fs.put([str(path) for path in sources], targets, **batch)
    if manifest_last and manifest.exists():
        fs.put_file(str(manifest), (remote / MANIFEST).path)


class RunWriter:
    """One run's life: `begin` (hidden, locked, running), then `complete` or `fail` (committed, visible).

    `work_dir` is the local directory Lightning and the writer assemble the run in: the hidden
    `.partial` directory of a local store, or a temporary directory for remote stores.
    """

    def __init__(self, store: str | os.PathLike | Location | None, experiment: str, run_name: str | None = None) -> None:
        self.location = locate(store)
        self.store = self.location.local_path if self.location.is_local else self.location
        self.experiment = validate_name(experiment, "experiment name")
        self.run_id = validate_name(run_name, "run name") if run_name is not None else new_run_id()
        self.final = self.location / self.experiment / self.run_id
        self.partial = self.location / self.experiment / partial_name(self.run_id)
        self._check_reachable()
        self._check_free()
        if self.location.is_local:
            self.work_dir = Path(self.partial.path)
        else:
            self.work_dir = Path(tempfile.mkdtemp(prefix="nde-lab-run-")) / self.run_id
        self.attrs: dict[str, Any] = {}
        self.settled = False
        self.token = uuid.uuid4().hex
        self._heartbeat: Heartbeat | None = None

    def _check_reachable(self) -> None:
        if self.location.protocol != "s3":
            return
        bucket = self.location.path.split("/", 1)[0]
        try:
            self.location.fs.ls(bucket)
        except Exception as err:
            raise StoreError(f"store {self.location.url!r} is not reachable ({type(err).__name__}: {err}); check the "
                             "bucket name and AWS_ENDPOINT_URL / credentials.") from err

    def _check_free(self) -> None:
        if self.final.exists() or self.partial.exists():
            raise RunConflictError(f"run {self.final.url} already exists (or is being written); choose another run name "
                                   "(earlier runs are never overwritten).")

    @property
    def final_dir(self) -> Path | Location:
        return Path(self.final.path) if self.location.is_local else self.final

    @property
    def checkpoint_dir(self) -> Path:
        return self.work_dir / CHECKPOINT_DIR

    @property
    def zarr_path(self) -> Path:
        return self.work_dir / ZARR_NAME

    # ---- life ----------------------------------------------------------------------------------
    def begin(self, *, recipe_yaml: str, seed: int | None, extra: dict[str, Any] | None = None) -> None:
        """Claim the run name (exclusively), start the heartbeat, write the config."""
        self.attrs = jsonable({
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
        })
        record = {**lock_record(self.token), "created": self.attrs["created"]}
        if self.location.is_local:
            self.work_dir.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.work_dir.mkdir()  # atomic: exactly one writer creates it
            except FileExistsError as err:
                raise RunConflictError(f"run {self.final.url} is being written by another writer.") from err
            if self.final.exists():
                shutil.rmtree(self.work_dir)
                raise RunConflictError(f"run {self.final.url} already exists.")
            (self.partial / LOCK).write_json(record)
        else:
            try:
                self._claim_remote(record)
            except RunConflictError:
                shutil.rmtree(self.work_dir.parent, ignore_errors=True)
                raise
            self.work_dir.mkdir(parents=True)
        self._heartbeat = Heartbeat(self.partial / LOCK, record).start()
        self.checkpoint_dir.mkdir()
        (self.work_dir / CONFIG_FILE).write_text(recipe_yaml)

    def _claim_remote(self, record: dict[str, Any]) -> None:
        """Object stores: create the lock by a conditional PUT (`If-None-Match: *`), so of concurrent
        writers of one name exactly one gets it; the winner then re-checks that the run was not
        published meanwhile (a finished writer removes its lock after uploading the run)."""
        lock = self.partial / LOCK
        try:
            lock.create_json(record)
        except FileExistsError as err:
            raise RunConflictError(f"run {self.final.url} is being written by another writer.") from err
        # a server whose conditional PUT is not atomic (moto's) may let a racing PUT overwrite the lock
        # just after this one: read it back once that window has passed
        time.sleep(CLAIM_SETTLE_S)
        if lock.read_json().get("token") != self.token:
            raise RunConflictError(f"run {self.final.url} is being written by another writer.")
        if self.final.exists():
            lock.remove()
            raise RunConflictError(f"run {self.final.url} already exists.")

    def complete(self, groups: dict[str, xr.Dataset], attrs: dict[str, Any] | None = None) -> Path | Location:
        """Write every group with status `complete`, commit the manifest, publish the run."""
        self.attrs.update(jsonable(attrs or {}))
        self.attrs.update(status="complete", finished=now_iso())
        write_tree(groups, self.zarr_path, self.attrs)
        return self._commit(sorted(groups))

    def fail(self, reason: str, groups: dict[str, xr.Dataset] | None = None, attrs: dict[str, Any] | None = None) -> Path | Location:
        """Mark the run `failed` with `reason` (keeping what is safe to keep) and publish it."""
        with contextlib.suppress(StoreError):
            self.attrs.update(jsonable(attrs or {}))
        self.attrs.update(status="failed", failure=reason, finished=now_iso())
        groups = groups or {}
        try:
            write_tree(groups, self.zarr_path, self.attrs)
        except Exception:  # the failure itself may come from the data: keep at least the root
            shutil.rmtree(self.zarr_path, ignore_errors=True)
            groups = {}
            write_tree({}, self.zarr_path, self.attrs)
        return self._commit(sorted(groups))

    def _commit(self, groups: list[str]) -> Path | Location:
        manifest = build_manifest(self.work_dir, status=self.attrs["status"], failure=self.attrs.get("failure", ""),
                                  created=self.attrs["created"], finished=self.attrs["finished"], groups=groups)
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self.location.is_local:
            (Location("file", str(self.work_dir)) / MANIFEST).write_json(manifest)
            try:
                os.rename(self.work_dir, self.final.path)
            except OSError as err:
                raise RunConflictError(f"run {self.final.url} appeared while this one was written: {err}") from err
            (self.final / LOCK).remove()
        else:
            (Location("file", str(self.work_dir)) / MANIFEST).write_json(manifest)
            upload(self.work_dir, self.final)
            self.partial.remove()
            shutil.rmtree(self.work_dir.parent, ignore_errors=True)
        self.settled = True
        return self.final_dir
