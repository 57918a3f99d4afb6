"""Root attributes of a run: provenance, versions, JSON-safe conversion."""

from __future__ import annotations

import json
import math
import platform
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np

__all__ = ["jsonable", "library_versions", "now_iso"]

_LIBRARIES = ("torch", "torchdiffeq", "torchsde", "pyro-ppl", "lightning", "xarray", "zarr", "numpy", "jsonargparse")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and nested containers into JSON-serialisable values.

    Non-finite floats become strings ("nan", "inf") because JSON has no such numbers.
    Anything else unknown becomes its `str`, never a pickle.
    """
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)
