"""Data: observed series (bundled, synthetic or a user's file) and the DataModules that serve them."""

from nde_lab.data.series import Series, load_hare_lynx, load_series_csv, load_series_dataset
from nde_lab.data.sources import HareLynx, SeriesFile, SeriesSource, Spiral
from nde_lab.data.spiral import spiral_series
from nde_lab.data.trajectory import TrajectoryDataModule

__all__ = [
    "HareLynx",
    "Series",
    "SeriesFile",
    "SeriesSource",
    "Spiral",
    "TrajectoryDataModule",
    "load_hare_lynx",
    "load_series_csv",
    "load_series_dataset",
    "spiral_series",
]
