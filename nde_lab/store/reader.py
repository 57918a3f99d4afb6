"""Reading stored runs: resolving a run (`latest`), checking it against its manifest, lazy groups.

`StoredRun` is the store's view of a run: attrs, groups, config and the files of the run, verified
against `manifest.json` when opened. The model and queries live above the store (`nde_lab.run.Run`).
"""

from __future__ import annotations

import os
import tempfile
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any

import xarray as xr
import yaml

from nde_lab.errors import RunDamagedError, RunNotReadyError, StoreError
from nde_lab.store.layout import CHECKPOINT_DIR, CONFIG_FILE, PARTIAL_SUFFIX, ZARR_NAME
from nde_lab.store.location import Location, locate
from nde_lab.store.manifest import MANIFEST, verify

__all__ = ["StoredRun", "open_stored", "read_manifest", "resolve_run", "resolve_run_dir"]


def read_manifest(run: Location) -> dict[str, Any] | None:
    """The run's manifest, None when it has none (never committed), `RunDamagedError` if unreadable."""
    target = run / MANIFEST
    try:
        data = target.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    from nde_lab.store.attrs import check_json_document

    try:
        manifest = check_json_document(data, MANIFEST)
    except StoreError as err:
        raise RunDamagedError(f"run {run.url!r}: {err}") from err
    if not isinstance(manifest, dict):
        raise RunDamagedError(f"run {run.url!r}: {MANIFEST} is not a JSON object.")
    return manifest


def resolve_run(path: str | os.PathLike | Location) -> Location:
    """A run's location from `path`: the run itself, or `<store>/<experiment>/latest` (the newest
    complete run by creation time)."""
    location = locate(path)
    if location.name == "latest" and not location.exists():
        from nde_lab.store.catalog import latest

        return latest(location.parent)
    if location.name.endswith(PARTIAL_SUFFIX):
        raise RunNotReadyError(f"{location.url!r} is a run still being written (or a dead leftover, see `nde-lab gc`); "
                               "it is never opened as a run.")
    if not location.is_dir():
        raise StoreError(f"{location.url!r} is not a run directory; give <store>/<experiment>/<run_id> or .../latest.")
    return location


def open_stored(path: str | os.PathLike | Location, *, allow_incomplete: bool = False, full_check: bool = False,
                cls: type[StoredRun] | None = None) -> StoredRun:
    """Open and check a stored run (see `nde_lab.open_run`)."""
    location = resolve_run(path)
    manifest = read_manifest(location)
    if manifest is None:
        if not (location / ZARR_NAME).exists():
            raise StoreError(f"{location.url!r} is not a run directory (no {ZARR_NAME}); give "
                             "<store>/<experiment>/<run_id> or .../latest.")
        raise RunDamagedError(f"run {location.url!r} has no {MANIFEST}: it was never committed (an interrupted "
                              "write); `nde-lab gc` removes it.")
    verify(location, manifest, location.files(), full=full_check)
    run = (cls or StoredRun)(location, manifest)
    if full_check:
        run.check()
    status = manifest.get("status")
    if status != "complete" and not allow_incomplete:
        reason = f": {manifest.get('failure')}" if manifest.get("failure") else ""
        raise RunNotReadyError(f"run {location.url!r} is {status!r}, not complete{reason}. "
                               "Pass allow_incomplete=True to inspect it anyway.")
    return run


class StoredRun:
    """A committed run: root attrs, groups as lazy Datasets, config, files; `save` adds groups."""

    def __init__(self, location: Location | os.PathLike | str, manifest: dict[str, Any] | None = None) -> None:
        self.location = locate(location)
        self.manifest = manifest if manifest is not None else read_manifest(self.location) or {}
        # each group opened once (Zarr metadata, xarray's indexes: ~6 ms), handed out as shallow copies
        self._opened: dict[tuple[str, str], xr.Dataset] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_opened": {}}  # opened groups hold Zarr stores: reopen after unpickling

    @property
    def path(self) -> Path | Location:
        """The run directory (a `Path` for local stores, else its `Location`)."""
        return self.location.local_path if self.location.is_local else self.location

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location.url!r}, status={self.status!r}, model_family={self.attrs.get('model_family')!r})"

    # ---- stored data ------------------------------------------------------------------------------
    @property
    def groups(self) -> list[str]:
        """The committed groups (files of interrupted writes are not among them)."""
        return list(self.manifest.get("groups", []))

    def _zarr(self) -> Any:
        return (self.location / ZARR_NAME).zarr_store(read_only=True)

    @cached_property
    def _root_attrs(self) -> dict[str, Any]:
        document = (self.location / ZARR_NAME / "zarr.json").read_json()
        return dict(document.get("attributes", {}))

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._root_attrs)

    @property
    def status(self) -> str:
        return str(self.manifest.get("status", self._root_attrs.get("status")))

    def group(self, name: str, chunks: Any = None) -> xr.Dataset:
        """One group as a lazy Dataset (dask-backed with `chunks`, e.g. `{}` for the stored chunks or
        `{"sample": 100}`); a missing group raises KeyError listing the groups present. Reading a
        damaged chunk, now or later, raises `RunDamagedError` naming the group and variable.

        The group is opened once per `StoredRun` and each call returns a shallow copy: the copies share
        no loaded data (xarray gives every copy its own cache), so nothing read stays pinned in the run
        and a copy can be changed freely; repeated queries skip re-reading the metadata."""
        if name not in self.groups:
            raise KeyError(f"run has no group {name!r}; it has {sorted(self.groups)}.")
        key = (name, repr(chunks))
        if key not in self._opened:
            self._opened[key] = self._open_group(name, chunks)
        return self._opened[key].copy(deep=False)

    def _open_group(self, name: str, chunks: Any) -> xr.Dataset:
        from nde_lab.store.checked import CheckedZarrStore

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            try:
                store = CheckedZarrStore.open_group(self._zarr(), group=name, mode="r", consolidated=False,
                                                    zarr_format=3)
                store.run_url = self.location.url
                return xr.open_dataset(store, decode_times=False, decode_timedelta=False, chunks=chunks)
            except (OSError, ValueError, KeyError) as err:
                raise RunDamagedError(f"run {self.location.url!r}: group {name!r} cannot be read: {err}") from err

    @cached_property
    def tree(self) -> xr.DataTree:
        """The whole run as a lazy DataTree of its committed groups (layout in docs/architecture.md)."""
        return xr.DataTree.from_dict({"/": xr.Dataset(attrs=self.attrs), **{f"/{g}": self.group(g) for g in self.groups}})

    @property
    def trajectories(self) -> xr.Dataset:
        return self.group("trajectories")

    @property
    def observed(self) -> xr.Dataset:
        return self.group("observed_data")

    @property
    def metrics(self) -> xr.Dataset:
        return self.group("metrics")

    @property
    def posterior(self) -> xr.Dataset:
        return self.group("posterior")

    @property
    def summary(self) -> xr.Dataset:
        return self.group("summary")

    @cached_property
    def config(self) -> dict[str, Any]:
        """The resolved recipe this run was made from."""
        return yaml.safe_load((self.location / CONFIG_FILE).read_bytes())

    def local_checkpoint_dir(self) -> Path:
        """The checkpoint directory on local disk (downloaded once for remote runs)."""
        if self.location.is_local:
            return self.location.local_path / CHECKPOINT_DIR
        target = Path(tempfile.mkdtemp(prefix="nde-lab-ckpt-"))
        remote = self.location / CHECKPOINT_DIR
        for rel in remote.files():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).write_bytes((remote / rel).read_bytes())
        return target

    def check(self) -> None:
        """Check every file against the manifest and decode every chunk (their CRC-32C): reads
        the whole run once; raises `RunDamagedError` naming the group and variable."""
        verify(self.location, self.manifest, self.location.files(), full=True)
        for name in self.groups:
            dataset = self.group(name)
            for var_name, var in dataset.variables.items():
                try:
                    var.load()
                except RunDamagedError:
                    raise  # a chunk that fails its check: the reader's error already names group and variable
                except Exception as err:
                    raise RunDamagedError(f"run {self.location.url!r}: group {name!r}, variable {var_name!r}: "
                                          f"a chunk cannot be decoded ({type(err).__name__}: {err}).") from err

    # ---- adding results ---------------------------------------------------------------------------
    def save(self, name: str, dataset: xr.Dataset, attrs: dict[str, Any] | None = None, *, overwrite: bool = False,
             provenance: dict[str, Any] | None = None) -> xr.Dataset:
        """Add `dataset` as group `name`, atomically, with its provenance; see `nde_lab.store.save`."""
        from nde_lab.store.save import save_group

        self.manifest = save_group(self.location, name, dataset, attrs=attrs, overwrite=overwrite,
                                   provenance=provenance)
        self.__dict__.pop("tree", None)
        self._opened = {key: ds for key, ds in self._opened.items() if key[0] != name}
        return self.group(name)


def resolve_run_dir(path: str | os.PathLike) -> Path | Location:
    """Compatibility: the run directory of `path` (`latest` resolved), a `Path` for local stores."""
    location = resolve_run(path)
    return location.local_path if location.is_local else location


def __getattr__(name: str) -> Any:
    # Compatibility: `Run`, `open_run` and `list_runs` moved above the store (nde_lab.run).
    if name in {"Run", "open_run", "list_runs"}:
        import nde_lab.run

        return getattr(nde_lab.run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
