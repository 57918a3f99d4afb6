"""DataModules for Bayesian inference: the rugged-GDP regression table and full-series observations."""

from __future__ import annotations

import csv
import io
from abc import ABC, abstractmethod
from importlib import resources
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from nde_lab.data.sources import HareLynx, SeriesSource
from nde_lab.errors import DataError
from nde_lab.prob.data import SeriesData, TabularData

__all__ = ["BayesDataModule", "RuggedGDPDataModule", "SeriesObservationsDataModule", "load_rugged_gdp"]


def load_rugged_gdp(path: str | Path | None = None) -> TabularData:
    """Log GDP per capita in 2000 against terrain ruggedness, an Africa indicator and their product.

    Rows with a finite `rgdppc_2000` only (170 nations); features: cont_africa, rugged,
    cont_africa * rugged; response: log(rgdppc_2000). Source note in the file's header.
    """
    if path is None:
        text = resources.files("nde_lab.data").joinpath("files/rugged_gdp.csv").read_text()
        where = "nde_lab/data/files/rugged_gdp.csv"
    else:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise DataError(f"{where}: cannot read the file ({err.strerror}).") from None
    note = " ".join(line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#"))
    numbered = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if not ln.startswith("#") and ln.strip()]
    rows = list(csv.DictReader(io.StringIO("\n".join(ln for _, ln in numbered))))
    line_of = [n for n, _ in numbered[1:]]  # file line of each data row (1-based, header excluded)
    needed = ["cont_africa", "rugged", "rgdppc_2000"]
    if not rows or any(c not in rows[0] for c in needed):
        raise DataError(f"{where}: expected columns {needed}, got {list(rows[0]) if rows else 'no rows'}.")

    def column(name: str) -> np.ndarray:
        values = []
        for k, r in enumerate(rows):
            text_value = (r[name] or "").strip()
            try:
                value = float(text_value) if text_value not in ("", "NA") else np.nan
            except ValueError:
                raise DataError(f"{where}: column {name!r}, line {line_of[k]}: {text_value!r} is not a number.") from None
            if not np.isfinite(value):
                raise DataError(f"{where}: column {name!r}, line {line_of[k]}: missing or non-finite value (NaN) "
                                f"{text_value!r}; drop or impute that row (the likelihood has no missing-data model).")
            values.append(value)
        return np.array(values)

    africa, rugged, gdp = column("cont_africa"), column("rugged"), column("rgdppc_2000")
    if (gdp <= 0).any():
        k = int(np.flatnonzero(gdp <= 0)[0])
        raise DataError(f"{where}: column 'rgdppc_2000', line {line_of[k]}: {gdp[k]:g} must be positive to take its log.")
    x = np.stack([africa, rugged, africa * rugged], axis=1)
    return TabularData(x=x, y=np.log(gdp), feature_names=["cont_africa", "rugged", "cont_africa_x_rugged"],
                       target_name="log_gdp", source=where, attrs={"source_note": note, "units": "log 2000 US$ per capita"})


class BayesDataModule(L.LightningDataModule, ABC):
    """Serves one full-data observation object to a Bayesian task (`.observations`), and a loader of
    `steps_per_epoch` placeholder batches that sets how many optimiser steps an epoch is."""

    def __init__(self, steps_per_epoch: int = 50) -> None:
        super().__init__()
        if steps_per_epoch < 1:
            raise DataError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}.")
        self.steps_per_epoch = steps_per_epoch
        self._obs: SeriesData | TabularData | None = None

    @abstractmethod
    def load(self) -> SeriesData | TabularData:
        """Read and validate the observations (subclasses call `self.validate()` at the end of __init__)."""

    def validate(self) -> None:
        """Load and validate the observations now, in the constructor, so bad data fails (exit 2, naming
        the file, column and line) before a run directory exists."""
        self._obs = self.load()

    @property
    def observations(self) -> SeriesData | TabularData:
        if self._obs is None:
            self._obs = self.load()
        return self._obs

    def setup(self, stage: str | None = None) -> None:
        """Nothing to do: the task reads `observations` itself, in its own precision."""

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.arange(self.steps_per_epoch)), batch_size=1)


class RuggedGDPDataModule(BayesDataModule):
    """The rugged-GDP regression table (bundled, or `path` to a CSV with the same columns)."""

    def __init__(self, path: str | None = None, steps_per_epoch: int = 50) -> None:
        super().__init__(steps_per_epoch=steps_per_epoch)
        self.path = path
        self.validate()

    def load(self) -> TabularData:
        return load_rugged_gdp(self.path)


class SeriesObservationsDataModule(BayesDataModule):
    """A whole observed series (default: the hare-lynx pelts, t = years since 1900) for posterior work."""

    def __init__(self, source: SeriesSource | None = None, steps_per_epoch: int = 50) -> None:
        super().__init__(steps_per_epoch=steps_per_epoch)
        self.source = source or HareLynx()
        self.validate()

    def load(self) -> SeriesData:
        s = self.source.load()
        return SeriesData(times=s.times, values=s.values, state_names=list(s.state_names), time_units=s.time_units,
                          value_units=str(s.attrs.get("units", "")), source=s.source or type(self.source).__name__,
                          attrs={k: str(v) for k, v in s.attrs.items()})
