"""Data: observed series (bundled, synthetic or a user's file) and the DataModules that serve them.

Exports resolve lazily, so a recipe's DataModule imports only what it needs.
"""

from __future__ import annotations

from nde_lab._lazy import lazy_exports

_EXPORTS = {
    "Series": "nde_lab.data.series",
    "load_hare_lynx": "nde_lab.data.series",
    "load_series_csv": "nde_lab.data.series",
    "load_series_dataset": "nde_lab.data.series",
    "BoardingSchool": "nde_lab.data.sources",
    "load_boarding_school": "nde_lab.data.outbreaks",
    "DampedOscillatorData": "nde_lab.data.sources",
    "load_damped_oscillator": "nde_lab.data.oscillator",
    "HareLynx": "nde_lab.data.sources",
    "SeriesFile": "nde_lab.data.sources",
    "SeriesSource": "nde_lab.data.sources",
    "Spiral": "nde_lab.data.sources",
    "spiral_series": "nde_lab.data.spiral",
    "TrajectoryDataModule": "nde_lab.data.trajectory",
    "PathsDataModule": "nde_lab.data.sde_data",
    "SimulatedPaths": "nde_lab.data.sde_data",
    "NileFlow": "nde_lab.data.sde_data",
    "load_nile": "nde_lab.data.sde_data",
    "RuggedGDPDataModule": "nde_lab.data.tabular",
    "SeriesObservationsDataModule": "nde_lab.data.tabular",
    "load_rugged_gdp": "nde_lab.data.tabular",
    "Toy2DDataModule": "nde_lab.data.toy2d",
    "toy2d_sample": "nde_lab.data.toy2d",
    "toy2d_log_density": "nde_lab.data.toy2d",
    "DigitsDataModule": "nde_lab.data.digits",
    "RegressionDataModule": "nde_lab.data.regression",
    "regression_data": "nde_lab.data.regression",
}

__all__, __getattr__, __dir__ = lazy_exports("nde_lab.data", _EXPORTS)
