"""Series sources a recipe can name: the spiral, the hare-lynx pelts, the boarding-school outbreak, the synthetic
damped oscillator, or a user's file."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from nde_lab.data.series import Series, load_hare_lynx, load_series_csv, load_series_dataset
from nde_lab.data.spiral import spiral_series
from nde_lab.errors import DataError

__all__ = ["BoardingSchool", "DampedOscillatorData", "HareLynx", "SeriesFile", "SeriesSource", "Spiral"]


class SeriesSource(ABC):
    """Something that yields one observed `Series` (validated)."""

    @abstractmethod
    def load(self) -> Series:
        """Return the series; raise `DataError` naming the problem if it is unusable."""


class Spiral(SeriesSource):
    """The spiral of Chen et al. (2018): 1000 points on [0, 25] from y(0) = (2, 0) by default."""

    def __init__(self, n_points: int = 1000, t_end: float = 25.0, noise_std: float = 0.0, seed: int = 0) -> None:
        if n_points < 2 or t_end <= 0 or noise_std < 0:
            raise DataError(
                f"Spiral needs n_points >= 2, t_end > 0, noise_std >= 0; got {n_points}, {t_end}, {noise_std}."
            )
        self.n_points, self.t_end, self.noise_std, self.seed = n_points, t_end, noise_std, seed

    def load(self) -> Series:
        return spiral_series(n_points=self.n_points, t_end=self.t_end, noise_std=self.noise_std, seed=self.seed)


class HareLynx(SeriesSource):
    """Hudson's Bay Company hare and lynx pelts 1900-1920 (shipped in the package)."""

    def load(self) -> Series:
        return load_hare_lynx()


class BoardingSchool(SeriesSource):
    """The 1978 boarding-school influenza outbreak (763 pupils; shipped in the package).

    Times are days since 1978-01-21 (counts at t = 1..14, so an SIR model starts at t0 = 0).

    Args:
        columns: counts to observe, among "in_bed" (pupils confined to bed) and "convalescent".
    """

    def __init__(self, columns: list[str] | None = None) -> None:
        self.columns = list(columns) if columns is not None else ["in_bed"]

    def load(self) -> Series:
        from nde_lab.data.outbreaks import load_boarding_school

        return load_boarding_school(self.columns)


class DampedOscillatorData(SeriesSource):
    """A damped oscillator's position x at t = 0.4..12.0 with Normal noise (synthetic; shipped in the package).

    Made once by benchmarks/oscillator_data.py from omega 1.5, zeta 0.1, (x0, v0) = (1, 0.5) at t0 = 0,
    noise sd 0.1 (`nde_lab.data.oscillator.OSCILLATOR_TRUE`).
    """

    def load(self) -> Series:
        from nde_lab.data.oscillator import load_damped_oscillator

        return load_damped_oscillator()


class SeriesFile(SeriesSource):
    """A user's series: CSV (a time column and state columns) or NetCDF/Zarr (a `time` dimension).

    Args:
        path: the file (.csv, .nc, .zarr); relative paths resolve from the working directory.
        time_column: CSV column (or dataset dimension) holding the times.
        state_columns: CSV columns or dataset variables to use as states (default: all others).
        time_units: unit of the times, stored in attrs.
    """

    def __init__(
        self,
        path: str,
        time_column: str = "time",
        state_columns: list[str] | None = None,
        time_units: str = "1",
    ) -> None:
        self.path = Path(path)
        self.time_column = time_column
        self.state_columns = state_columns
        self.time_units = time_units

    def load(self) -> Series:
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            series = load_series_csv(self.path, time_column=self.time_column, state_columns=self.state_columns)
        elif suffix in {".nc", ".nc4", ".netcdf", ".zarr"}:
            series = load_series_dataset(self.path, time_dim=self.time_column, variables=self.state_columns)
        else:
            raise DataError(
                f"data file {str(self.path)!r}: unknown format {suffix!r}; must be one of '.csv', '.nc', '.zarr'."
            )
        if self.time_units != "1":
            series = Series(series.times, series.values, series.state_names, self.time_units, series.source)
        return series
