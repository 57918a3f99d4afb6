"""Reading a run's group so that a damaged chunk raises the lab's error, whenever it is read.

A chunk's bytes are checked by its CRC-32C when Zarr decodes it, which happens lazily: at `.values`,
`.load()` or a dask compute, long after `open_run` returned. Zarr then raises a bare `ValueError`
("checksum does not match") or Blosc's `RuntimeError` that names neither the run, the group nor the
variable. xarray's Zarr backend builds each variable on a `ZarrArrayWrapper`; `CheckedZarrStore` gives
each variable a subclass of it that turns those errors into `RunDamagedError` naming the run, group
and variable. This is the one place the lab depends on xarray's backend classes (not its public API);
everything else about the read (decoding, lazy indexing, dask chunks) is xarray's own.
"""

from __future__ import annotations

from typing import Any

from xarray import Variable
from xarray.backends.zarr import ZarrArrayWrapper, ZarrStore
from xarray.core import indexing

from nde_lab.errors import RunDamagedError

__all__ = ["CheckedZarrStore"]

#: what Zarr and its codecs raise on bytes that cannot be decoded (CRC-32C mismatch, Blosc failure)
#: or cannot be read (the object vanished or cannot be fetched)
DECODE_ERRORS = (ValueError, RuntimeError, OSError)


class CheckedArrayWrapper(ZarrArrayWrapper):
    """`ZarrArrayWrapper` whose reads raise `RunDamagedError` naming `where` when a chunk is damaged."""

    __slots__ = ("_where",)

    def __init__(self, zarr_array: Any, where: str) -> None:
        super().__init__(zarr_array)
        self._where = where

    def _damaged(self, err: Exception) -> RunDamagedError:
        return RunDamagedError(f"{self._where}: a chunk cannot be read or decoded ({type(err).__name__}: {err}). "
                               "The run is damaged; `open_run(..., full_check=True)` checks every chunk.")

    def __getitem__(self, key: Any) -> Any:
        try:
            return super().__getitem__(key)
        except DECODE_ERRORS as err:
            raise self._damaged(err) from err

    async def async_getitem(self, key: Any) -> Any:
        try:
            return await super().async_getitem(key)
        except DECODE_ERRORS as err:
            raise self._damaged(err) from err


class CheckedZarrStore(ZarrStore):
    """xarray's `ZarrStore` for one group of a run, whose variables read through `CheckedArrayWrapper`.

    Open with `CheckedZarrStore.open_group(zarr_store, group=name, mode="r", zarr_format=3)`, then set
    `run_url` (used in error messages) and hand it to `xr.open_dataset`.
    """

    run_url: str = "<run>"

    def open_store_variable(self, name: str) -> Variable:
        var = super().open_store_variable(name)
        group = self.zarr_group.path or "/"
        where = f"run {self.run_url!r}: group {group!r}, variable {name!r}"
        data = indexing.LazilyIndexedArray(CheckedArrayWrapper(self.members[name], where))
        return Variable(var.dims, data, var.attrs, var.encoding)
