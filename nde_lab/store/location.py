"""Where a store lives: local paths and fsspec URLs (`file://`, `memory://`, `s3://`), one interface.

`locate(store)` turns `--store`, `$NDE_LAB_STORE` or an `open_run` argument into a `Location`: an
fsspec filesystem plus a path on it. Unknown schemes are refused (never a local folder named `s3:`).
S3 credentials and endpoint come from the usual environment variables (`AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_S3`, `AWS_DEFAULT_REGION`), read by
s3fs/botocore.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nde_lab.errors import StoreError

__all__ = ["SCHEMES", "STORE_ENV", "Location", "locate", "resolve_store"]

STORE_ENV = "NDE_LAB_STORE"
#: URL schemes a store may use; a path without a scheme is local.
SCHEMES = ("file", "memory", "s3")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)\Z", re.DOTALL)


@dataclass(frozen=True)
class Location:
    """A place in a store: `protocol` ('file', 'memory', 's3') and an fsspec `path` on it."""

    protocol: str
    path: str

    # ---- naming --------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.path if self.is_local else f"{self.protocol}://{self.path.lstrip('/')}" if self.protocol == "s3" \
            else f"{self.protocol}://{self.path}"

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    @property
    def local_path(self) -> Path:
        if not self.is_local:
            raise StoreError(f"store {self.url!r} is not on the local file system.")
        return Path(self.path)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def parent(self) -> Location:
        return Location(self.protocol, posixpath.dirname(self.path.rstrip("/")))

    def __truediv__(self, part: str) -> Location:
        return Location(self.protocol, posixpath.join(self.path, part))

    def __str__(self) -> str:
        return self.url

    # ---- file system -----------------------------------------------------------------------------
    @property
    def fs(self) -> Any:
        import fsspec

        # other processes write the same store: never answer from a cached listing
        return fsspec.filesystem(self.protocol, use_listings_cache=False) if self.protocol == "s3" \
            else fsspec.filesystem(self.protocol)

    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def is_dir(self) -> bool:
        return bool(self.fs.isdir(self.path))

    def children(self) -> list[Location]:
        """Sub-directories (sorted by name); empty when this is not a directory."""
        try:
            entries = self.fs.ls(self.path, detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        dirs = [e["name"] for e in entries if e.get("type") == "directory"]
        return sorted((Location(self.protocol, d.rstrip("/")) for d in dirs), key=lambda loc: loc.name)

    def files(self) -> dict[str, int]:
        """Every file below this directory: path relative to it -> size in bytes."""
        try:
            found = self.fs.find(self.path, detail=True)
        except FileNotFoundError:
            return {}
        root = self.path.rstrip("/") + "/"
        return {name[len(root):]: int(info["size"])
                for name, info in found.items() if info.get("type", "file") == "file"}

    def read_bytes(self) -> bytes:
        return self.fs.cat_file(self.path)

    def read_json(self) -> Any:
        return json.loads(self.read_bytes())

    def write_bytes(self, data: bytes) -> None:
        """Write atomically: local files through a temporary name and `os.replace`; object stores
        by one PUT (which is atomic there)."""
        if self.is_local:
            target = Path(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        else:
            self.fs.pipe_file(self.path, data)

    def write_json(self, value: Any) -> None:
        self.write_bytes(json.dumps(value, indent=1, allow_nan=False).encode())

    def create_bytes(self, data: bytes) -> None:
        """Create this file with `data` only if it does not exist yet, atomically: of concurrent
        creators exactly one succeeds, the others get `FileExistsError`. Local files by `O_EXCL`; S3
        by a conditional PUT (`If-None-Match: *`); `memory://` within its one process."""
        if self.is_local:
            target = Path(self.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            return
        try:
            self.fs.pipe_file(self.path, data, mode="create")
        except FileExistsError:
            raise
        except Exception as err:
            if self.protocol == "s3":
                raise StoreError(f"store {self.url!r}: the S3 server refused a conditional write (If-None-Match: *; "
                                 f"{type(err).__name__}: {err}); the run store needs it to give each run name to "
                                 "exactly one writer.") from err
            raise

    def create_json(self, value: Any) -> None:
        """`create_bytes` of `value` as strict JSON."""
        self.create_bytes(json.dumps(value, indent=1, allow_nan=False).encode())

    def remove(self) -> None:
        if self.exists():
            self.fs.rm(self.path, recursive=True)

    def zarr_store(self, *, read_only: bool) -> Any:
        """A Zarr v3 store for this location (a path string for local ones)."""
        if self.is_local:
            return self.path
        from zarr.storage import FsspecStore

        return FsspecStore.from_url(self.url, read_only=read_only)


def locate(store: str | os.PathLike | Location | None = None) -> Location:
    """The store (or run) location: `store` if given, else $NDE_LAB_STORE, else ./store.

    Local paths and `file://` URLs resolve to absolute paths; `memory://` and `s3://` stay URLs.
    Raises `StoreError` for any other scheme, naming the ones supported.
    """
    if isinstance(store, Location):
        return store
    chosen = str(store) if store not in (None, "") else os.environ.get(STORE_ENV) or "store"
    match = _URL.match(chosen)
    if match is None:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]+:", chosen):  # 's3:bucket', 'foo:/x' (one letter: a drive)
            raise StoreError(f"store {chosen!r} looks like a URL but is not one; use one of "
                             f"{', '.join(s + '://' for s in SCHEMES)} or a local path.")
        return Location("file", str(Path(chosen).expanduser().resolve()))
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme not in SCHEMES:
        raise StoreError(f"store {chosen!r} has the unsupported scheme {scheme!r}; must be a local path or one of "
                         f"{', '.join(s + '://' for s in SCHEMES)}.")
    if not rest.strip("/"):
        raise StoreError(f"store {chosen!r} names no bucket or path.")
    if scheme == "file":
        return Location("file", str(Path("/" + rest.lstrip("/")).resolve()))
    if scheme == "memory":
        return Location("memory", "/" + rest.strip("/"))
    return Location("s3", rest.strip("/"))


def resolve_store(store: str | os.PathLike | None = None) -> Path:
    """The local store root (see `locate` for URLs): `store`, else $NDE_LAB_STORE, else ./store."""
    return locate(store).local_path
