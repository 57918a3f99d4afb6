"""Data loaders: bundled series, the spiral, and the errors a user's file can cause."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from nde_lab.data import SeriesFile, TrajectoryDataModule, load_hare_lynx, spiral_series
from nde_lab.errors import DataError


def test_hare_lynx_is_shipped_with_its_source_note():
    series = load_hare_lynx()
    assert series.state_names == ["hare", "lynx"]
    assert series.times[0] == 0.0 and series.times[-1] == 20.0 and series.values.shape == (21, 2)
    np.testing.assert_allclose(series.values[0], [30.0, 4.0])
    np.testing.assert_allclose(series.values[-1], [24.7, 8.6])
    assert "Hudson" in series.attrs["source_note"] and "stan-dev" in series.attrs["source_note"]


def test_spiral_matches_the_published_setup():
    series = spiral_series()
    assert series.values.shape == (1000, 2) and series.times[-1] == 25.0
    np.testing.assert_allclose(series.values[0], [2.0, 0.0])
    # the cubic spiral decays slowly towards the origin while rotating
    radius = np.linalg.norm(series.values, axis=1)
    assert radius[-1] < radius[0] and radius[-1] > 0.3
    noisy = spiral_series(noise_std=0.1, seed=3)
    residual = noisy.values - series.values
    assert abs(residual.std() - 0.1) < 0.01


def _csv(tmp_path, text):
    path = tmp_path / "series.csv"
    path.write_text(text)
    return path


def test_csv_round_trip(tmp_path):
    path = _csv(tmp_path, "# comment\ntime,a,b\n0,1,2\n0.5,2,3\n1.5,3,4\n")
    series = SeriesFile(str(path)).load()
    np.testing.assert_allclose(series.times, [0, 0.5, 1.5])
    assert series.state_names == ["a", "b"] and series.values.shape == (3, 2)


@pytest.mark.parametrize(
    "text,kwargs,match",
    [
        ("t,a\n0,1\n1,2\n", {}, r"no time column 'time'; the columns are \['t', 'a'\]"),
        ("time,a\n0,1\n1,2\n", {"state_columns": ["b"]}, r"no column\(s\) \['b'\]"),
        ("time,a\n0,1\n1,\n2,3\n", {}, "NaN or infinite at row 1, column 0"),
        ("time,a\n0,1\n1,nan\n", {}, "NaN or infinite at row 1"),
        ("time,a\n0,1\n2,2\n1,3\n", {}, r"strictly increasing, but row 2 \(1\) does not come after row 1 \(2\)"),
        ("time,a\n0,1\n0,2\n", {}, "strictly increasing"),
        ("time,a\n0,1\n1,high\n", {}, "column 'a' must be numeric, but holds 'high'"),
        ("time,a\n0,1\n", {}, "at least 2 observations"),
    ],
)
def test_csv_errors_name_file_column_and_problem(tmp_path, text, kwargs, match):
    path = _csv(tmp_path, text)
    with pytest.raises(DataError, match=match) as info:
        SeriesFile(str(path), **kwargs).load()
    assert str(path) in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"data file '.*nowhere.csv' does not exist"):
        SeriesFile(str(tmp_path / "nowhere.csv")).load()


def test_unknown_format_is_named(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_text("")
    with pytest.raises(DataError, match=r"unknown format '.parquet'; must be one of"):
        SeriesFile(str(path)).load()


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_netcdf_and_zarr_series(tmp_path, suffix):
    ds = xr.Dataset({"u": ("time", [1.0, 2.0, 3.0]), "v": ("time", [0.0, 1.0, 0.5])}, coords={"time": [0.0, 1.0, 2.5]})
    path = tmp_path / f"s{suffix}"
    ds.to_netcdf(path) if suffix == ".nc" else ds.to_zarr(path)
    series = SeriesFile(str(path)).load()
    assert series.state_names == ["u", "v"]
    np.testing.assert_allclose(series.values[:, 1], [0.0, 1.0, 0.5])


@pytest.mark.parametrize(
    "ds,kwargs,match",
    [
        (xr.Dataset({"u": ("t", [1.0, 2.0])}, coords={"t": [0.0, 1.0]}), {}, r"no dimension 'time'; the dimensions are \['t'\]"),
        (xr.Dataset({"u": ("time", [1.0, np.nan])}, coords={"time": [0.0, 1.0]}), {}, "NaN or infinite at row 1"),
        (xr.Dataset({"u": ("time", [1.0, 2.0])}, coords={"time": [1.0, 0.0]}), {}, "dimension 'time' must be strictly increasing"),
        (xr.Dataset({"u": ("time", [1.0, 2.0])}, coords={"time": [0.0, 1.0]}), {"state_columns": ["w"]}, "no variable 'w'"),
        (xr.Dataset({"u": ("time", ["a", "b"])}, coords={"time": [0.0, 1.0]}), {"state_columns": ["u"]}, "variable 'u' must be numeric"),
    ],
)
def test_dataset_errors(tmp_path, ds, kwargs, match):
    path = tmp_path / "bad.nc"
    ds.to_netcdf(path)
    with pytest.raises(DataError, match=match):
        SeriesFile(str(path), **kwargs).load()


def test_windows_are_reproducible_and_shaped():
    def first_batch(seed):
        dm = TrajectoryDataModule(_spiral_source(), window_length=7, windows_per_batch=5, seed=seed)
        return next(iter(dm.train_dataloader()))

    times, values = first_batch(1)
    assert times.shape == (5, 7) and values.shape == (5, 7, 2)
    _, again_v = first_batch(1)
    assert (again_v == values).all()
    assert not (first_batch(2)[1] == values).all()


def _spiral_source():
    from nde_lab.data import Spiral

    return Spiral(n_points=100)
