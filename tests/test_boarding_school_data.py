"""The bundled 1978 boarding-school influenza outbreak: values, times, units and source note."""

from __future__ import annotations

import numpy as np
import pytest
from jsonargparse import ArgumentParser

from nde_lab.data import BoardingSchool, load_boarding_school
from nde_lab.data.tabular import SeriesObservationsDataModule
from nde_lab.errors import DataError

IN_BED = [3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4]
CONVALESCENT = [0, 0, 0, 0, 9, 17, 105, 162, 176, 166, 150, 85, 47, 20]


def test_boarding_school_loads_the_published_counts():
    series = BoardingSchool().load()
    assert series.state_names == ["in_bed"] and series.values.shape == (14, 1)
    np.testing.assert_array_equal(series.times, np.arange(1.0, 15.0))  # t0 = 0 is 1978-01-21, the day before
    np.testing.assert_array_equal(series.values[:, 0], IN_BED)
    assert series.time_units == "days since 1978-01-21"
    assert "BMJ 1978;1(6112):587" in series.attrs["source_note"] and "763" in series.attrs["units"]
    both = load_boarding_school(["in_bed", "convalescent"])
    np.testing.assert_array_equal(both.values, np.column_stack([IN_BED, CONVALESCENT]))
    with pytest.raises(DataError, match=r"\['beds'\] not available; choose among \['in_bed', 'convalescent'\]"):
        BoardingSchool(["beds"]).load()


def test_boarding_school_is_a_recipe_source():
    """`source: {class_path: nde_lab.data.BoardingSchool}` gives the posterior data module the counts and units."""
    parser = ArgumentParser()
    parser.add_class_arguments(SeriesObservationsDataModule, "data")
    cfg = parser.parse_object({"data": {"source": {"class_path": "nde_lab.data.BoardingSchool"}}})
    dm = parser.instantiate(cfg).data
    data = dm.load()
    np.testing.assert_array_equal(data.values.numpy().ravel(), IN_BED)
    assert data.time_units == "days since 1978-01-21" and data.state_names == ["in_bed"]
