"""The run manifest: the commit record of a run, and the check of a run against it.

`manifest.json` at the run's root is written last, in one atomic write (a rename locally, one PUT on
an object store). It lists every file of the run (config, checkpoint, every Zarr metadata document
and chunk) with its size, and the SHA-256 of every file that is not a chunk (chunks end with their
own CRC-32C, checked when decoded), the run's status and its groups. A run without a manifest was
never committed; a run whose files disagree with its manifest is damaged. Reading trusts only what
the manifest lists, so files left by an interrupted write (or a later `save`) are invisible.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from nde_lab.errors import RunDamagedError, StoreError
from nde_lab.store.attrs import check_json_document

__all__ = ["FORMAT", "MANIFEST", "build_manifest", "hash_files", "verify"]

MANIFEST = "manifest.json"
FORMAT = "nde-lab-run/1"
#: files that are never part of a commit (liveness, staging)
UNTRACKED = ("lock.json", ".staging")
_METADATA = ("zarr.json", "config.yaml")


#: the root metadata is rewritten when `save` re-consolidates the metadata: checked as strict JSON only
ROOT_METADATA = "run.zarr/zarr.json"


def _is_chunk(rel: str) -> bool:
    return rel.startswith("run.zarr/") and rel.rsplit("/", 1)[-1] != "zarr.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_files(root: Path, prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every file below local `root` (except untracked ones): relative path -> {size, sha256}."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in UNTRACKED)
        for name in sorted(names):
            if name in UNTRACKED or name == MANIFEST or name.endswith(".tmp"):
                continue
            path = Path(folder) / name
            rel = prefix + path.relative_to(root).as_posix()
            files[rel] = {"size": path.stat().st_size}
            if not _is_chunk(rel) and rel != ROOT_METADATA:  # chunks carry their own CRC-32C
                files[rel]["sha256"] = _sha256(path)
    return files


def build_manifest(root: Path, *, status: str, created: str, finished: str, groups: list[str],
                   failure: str = "") -> dict[str, Any]:
    """The manifest of the local run directory `root` as it is now."""
    return {"format": FORMAT, "status": status, "failure": failure, "created": created, "finished": finished,
            "groups": sorted(groups), "files": hash_files(root)}


def describe(rel: str) -> str:
    """'group 'g', variable 'v'' for a file of run.zarr, else the file's role."""
    parts = rel.split("/")
    if parts[0] != "run.zarr":
        return f"file {rel!r}"
    if len(parts) == 2:
        return "the root metadata"
    if len(parts) == 3:
        return f"group {parts[1]!r} metadata"
    return f"group {parts[1]!r}, variable {parts[2]!r}"


def verify(run: Any, manifest: dict[str, Any], listing: dict[str, int], *, full: bool = False) -> None:
    """Check the run at `run` (a `Location`) against its manifest, given its file `listing`.

    Every listed file must exist with its size; metadata documents (and, with `full`, every chunk)
    must match their SHA-256. Raises `RunDamagedError` naming the group and variable.
    """
    if manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise RunDamagedError(f"run {run.url!r}: {MANIFEST} is not an nde-lab manifest (format {manifest.get('format')!r}).")
    to_hash = []
    for rel, entry in manifest["files"].items():
        if rel not in listing:
            raise RunDamagedError(f"run {run.url!r}: {describe(rel)}: object {rel!r} is missing.")
        if rel == ROOT_METADATA:
            to_hash.append(rel)
            continue
        if listing[rel] != entry["size"]:
            raise RunDamagedError(f"run {run.url!r}: {describe(rel)}: object {rel!r} has {listing[rel]} bytes, "
                                  f"the manifest says {entry['size']}.")
        if "sha256" in entry and (full or rel.rsplit("/", 1)[-1] in _METADATA):
            to_hash.append(rel)
    # one batched read (concurrent on object stores)
    paths = {(run / rel).path: rel for rel in to_hash}
    contents = run.fs.cat(list(paths)) if paths else {}
    for path, data in contents.items():
        rel = paths.get(path) or paths.get("/" + path.lstrip("/")) or paths.get(path.lstrip("/"))
        if "sha256" in manifest["files"][rel] and hashlib.sha256(data).hexdigest() != manifest["files"][rel]["sha256"]:
            raise RunDamagedError(f"run {run.url!r}: {describe(rel)}: object {rel!r} does not match its checksum.")
        if rel.endswith("zarr.json"):
            try:
                check_json_document(data, rel)
            except StoreError as err:
                raise RunDamagedError(f"run {run.url!r}: {describe(rel)}: {err}") from err
