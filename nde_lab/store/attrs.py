"""Root attributes of a run: provenance, versions, JSON-safe conversion."""

from __future__ import annotations

import json
import math
import platform
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np

from nde_lab.errors import StoreError

__all__ = ["check_json_document", "jsonable", "library_versions", "now_iso"]

_LIBRARIES = ("torch", "torchdiffeq", "torchsde", "pyro-ppl", "lightning", "xarray", "zarr", "numpy", "jsonargparse")


def now_iso() -> str:
    """Now, UTC, ISO 8601 to the microsecond (sorts by time as text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def jsonable(value: Any, key: str = "") -> Any:
    """`value` as strict JSON data, by one documented rule, or `StoreError` naming the offending key.

    Kept: None, bool, int, str, finite float, lists and str-keyed dicts of those. Converted: numpy
    scalars to Python numbers, numpy arrays and tuples to lists, NaN and +-inf to null (JSON has no
    such numbers). Refused: everything else (tensors, sets, bytes, paths, arbitrary objects), so an
    attribute never silently becomes its `str()`.
    """
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise StoreError(f"attribute {key}: key {k!r} is a {type(k).__name__}; attribute keys must be strings.")
            out[k] = jsonable(v, f"{key}.{k}" if key else k)
        return out
    if isinstance(value, list | tuple):
        return [jsonable(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise StoreError(f"attribute {key!r}: an array of dtype {value.dtype} is not JSON; store it as a variable.")
        return jsonable(value.tolist(), key)
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return jsonable(value.item(), key)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    raise StoreError(
        f"attribute {key!r} has a value of type {type(value).__name__}, which is not JSON; convert it "
        "(numbers, strings, lists, dicts, numpy scalars/arrays) or store it as a variable."
    )


def check_json_document(text: str | bytes, where: str) -> Any:
    """Parse `text` as strict JSON (no NaN/Infinity), raising `StoreError` naming `where`."""

    def _refuse(constant: str) -> Any:
        raise ValueError(f"non-standard JSON constant {constant}")

    try:
        return json.loads(text, parse_constant=_refuse)
    except ValueError as err:
        raise StoreError(f"metadata {where!r} is not valid JSON ({err}).") from err
