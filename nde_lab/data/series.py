"""Observed time series: the `Series` container and validated loaders for CSV, NetCDF and Zarr files."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from nde_lab.errors import DataError

__all__ = ["Series", "load_hare_lynx", "load_series_csv", "load_series_dataset", "validate_series"]


@dataclass(frozen=True)
class Series:
    """A multivariate time series.

    Attributes:
        times: observation times, shape (T,), strictly increasing, in `time_units`.
        values: observations, shape (T, D), float64, finite.
        state_names: D names, one per column of `values`.
        time_units: unit of `times` (free text, stored in attrs).
        source: where the data came from (file path or generator description).
        attrs: extra JSON-able metadata (units of values, source notes).
    """

    times: np.ndarray
    values: np.ndarray
    state_names: list[str]
    time_units: str = "1"
    source: str = ""
    attrs: dict[str, str] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.values.shape[1]


def validate_series(times: np.ndarray, values: np.ndarray, *, where: str, time_name: str = "time") -> None:
    """Raise `DataError` naming `where` (the file and column/dimension) if the series is unusable."""
    if times.ndim != 1:
        raise DataError(f"{where}: {time_name} must be 1-D, got shape {times.shape}.")
    if values.ndim != 2 or values.shape[0] != times.shape[0]:
        raise DataError(f"{where}: values must have shape ({times.shape[0]}, D), got {values.shape}.")
    if times.shape[0] < 2:
        raise DataError(f"{where}: need at least 2 observations, got {times.shape[0]}.")
    if not np.isfinite(times).all():
        bad = int(np.flatnonzero(~np.isfinite(times))[0])
        raise DataError(f"{where}: {time_name} has a missing or non-finite value at row {bad}.")
    steps = np.diff(times)
    if (steps <= 0).any():
        bad = int(np.flatnonzero(steps <= 0)[0])
        raise DataError(
            f"{where}: {time_name} must be strictly increasing, but row {bad + 1} ({float(times[bad + 1]):g}) "
            f"does not come after row {bad} ({float(times[bad]):g}); sort the rows or drop duplicates."
        )
    if not np.isfinite(values).all():
        row, col = (int(i[0]) for i in np.nonzero(~np.isfinite(values)))
        raise DataError(f"{where}: value is NaN or infinite at row {row}, column {col}; fill or drop it.")


def _to_float(column: list[str], *, where: str, name: str) -> np.ndarray:
    try:
        return np.array([float(v) if v.strip() != "" else np.nan for v in column], dtype=np.float64)
    except ValueError as err:
        raise DataError(f"{where}: column {name!r} must be numeric, but holds {err.args[0].split(': ')[-1]}.") from None


def _read_csv_text(text: str, *, where: str, time_column: str, state_columns: list[str] | None) -> Series:
    rows = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.reader(io.StringIO("\n".join(rows)))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DataError(f"{where}: the file is empty.") from None
    body = list(reader)
    if time_column not in header:
        raise DataError(f"{where}: no time column {time_column!r}; the columns are {header}. Set time_column.")
    names = state_columns or [h for h in header if h != time_column]
    missing = [n for n in names if n not in header]
    if missing:
        raise DataError(f"{where}: no column(s) {missing}; the columns are {header}.")
    if not names:
        raise DataError(f"{where}: no state columns besides the time column {time_column!r}.")
    columns = {h: [r[i] if i < len(r) else "" for r in body] for i, h in enumerate(header)}
    times = _to_float(columns[time_column], where=where, name=time_column)
    values = np.stack([_to_float(columns[n], where=where, name=n) for n in names], axis=1)
    validate_series(times, values, where=where, time_name=f"column {time_column!r}")
    return Series(times=times, values=values, state_names=list(names), source=where)


def load_series_csv(path: str | Path, *, time_column: str = "time", state_columns: list[str] | None = None) -> Series:
    """Load a CSV whose `time_column` holds times and whose other (or given) columns hold states.

    Lines starting with '#' are comments. Errors name the file, the column and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist (resolved from {Path.cwd()}).")
    return _read_csv_text(path.read_text(), where=str(path), time_column=time_column, state_columns=state_columns)


def load_series_dataset(
    path: str | Path, *, time_dim: str = "time", variables: list[str] | None = None
) -> Series:
    """Load a NetCDF (.nc) or Zarr (.zarr) dataset whose variables share the dimension `time_dim`.

    Each selected variable must be 1-D along `time_dim`; it becomes one state coordinate.
    """
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {str(path)!r} does not exist (resolved from {Path.cwd()}).")
    try:
        ds = xr.open_zarr(path) if path.suffix == ".zarr" or path.is_dir() else xr.open_dataset(path)
    except Exception as err:  # the engines raise many types; name the file and the cause
        raise DataError(f"{path}: cannot be opened as NetCDF or Zarr ({type(err).__name__}: {err}).") from None
    with ds:
        if time_dim not in ds.dims:
            raise DataError(f"{path}: no dimension {time_dim!r}; the dimensions are {list(ds.dims)}. Set time_dim.")
        names = variables or [v for v in ds.data_vars if ds[v].dims == (time_dim,)]
        for name in names:
            if name not in ds.data_vars:
                raise DataError(f"{path}: no variable {name!r}; the variables are {list(ds.data_vars)}.")
            if ds[name].dims != (time_dim,):
                raise DataError(f"{path}: variable {name!r} must have dims ({time_dim!r},), got {ds[name].dims}.")
            if not np.issubdtype(ds[name].dtype, np.number):
                raise DataError(f"{path}: variable {name!r} must be numeric, got dtype {ds[name].dtype}.")
        if not names:
            raise DataError(f"{path}: no numeric variable along {time_dim!r}.")
        if time_dim not in ds.coords or not np.issubdtype(ds[time_dim].dtype, np.number):
            raise DataError(f"{path}: dimension {time_dim!r} needs a numeric coordinate (times as numbers).")
        times = np.asarray(ds[time_dim].values, dtype=np.float64)
        values = np.stack([np.asarray(ds[n].values, dtype=np.float64) for n in names], axis=1)
        units = str(ds[time_dim].attrs.get("units", "1"))
    validate_series(times, values, where=str(path), time_name=f"dimension {time_dim!r}")
    return Series(times=times, values=values, state_names=list(names), time_units=units, source=str(path))


def load_hare_lynx() -> Series:
    """Hudson's Bay Company hare and lynx pelts (thousands), 1900-1920, shipped with the package.

    Times are years since 1900 (t = 0 in 1900); states are ("hare", "lynx"). Source note in the file.
    """
    text = resources.files("nde_lab.data").joinpath("files/hudson_bay_lynx_hare.csv").read_text()
    note = " ".join(line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#"))
    raw = _read_csv_text(text, where="hudson_bay_lynx_hare.csv", time_column="year", state_columns=["hare", "lynx"])
    return Series(
        times=raw.times - 1900.0,
        values=raw.values,
        state_names=["hare", "lynx"],
        time_units="years since 1900",
        source="nde_lab/data/files/hudson_bay_lynx_hare.csv",
        attrs={"units": "thousands of pelts", "source_note": note},
    )
