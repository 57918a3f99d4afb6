"""Where runs live: store resolution, name validation, sortable run ids."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from nde_lab.errors import StoreError
from nde_lab.store.location import STORE_ENV, resolve_store

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "PARTIAL_SUFFIX",
    "STORE_ENV",
    "ZARR_NAME",
    "new_run_id",
    "partial_name",
    "resolve_store",
    "validate_name",
]

ZARR_NAME = "run.zarr"
CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
PARTIAL_PREFIX = "."
PARTIAL_SUFFIX = ".partial"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}\Z")


def validate_name(name: str, what: str) -> str:
    """Return `name` if it is a safe single path component, else raise `StoreError` naming `what`.

    Allowed: letters, digits, '_', '-', '.', starting with a letter or digit, at most 128 characters;
    so no path separators, no '..', nothing hidden, nothing that escapes the store.
    """
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name or name == "latest":
        raise StoreError(
            f"{what} {name!r} is not a valid name: use letters, digits, '_', '-' and '.', starting with a "
            "letter or digit (no '/', no '..', not 'latest'), at most 128 characters."
        )
    return name


def new_run_id(now: datetime | None = None) -> str:
    """A unique, lexically sortable run id: UTC time to the microsecond plus a random suffix."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%S_%f}Z-{secrets.token_hex(3)}"


def partial_name(run_id: str) -> str:
    """The hidden directory name a run is assembled under before it is made visible."""
    return f"{PARTIAL_PREFIX}{run_id}{PARTIAL_SUFFIX}"
