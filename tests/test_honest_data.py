"""Bad Bayesian data fails before any run exists: exit 2 naming the file, the column and the line (issue 9)."""

from __future__ import annotations

import pytest
from cli import RECIPES, run_cli, runs_in

from nde_lab.data.tabular import RuggedGDPDataModule
from nde_lab.errors import DataError

HEADER = "isocode,country,cont_africa,rugged,rgdppc_2000\n"


def test_missing_value_exits_2_naming_file_column_and_line_with_no_run(tmp_path):
    bad = tmp_path / "nan.csv"
    bad.write_text("# a comment line\n" + HEADER + "A,a,0,1.0,1200\nB,b,1,2.0,NA\n")
    store = tmp_path / "store"
    proc = run_cli("fit", "--config", str(RECIPES / "rugged_regression_svi.yaml"), "--data.init_args.path", str(bad),
                   store=store)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"{bad}: column 'rgdppc_2000', line 4" in proc.stderr
    assert runs_in(store) == []


@pytest.mark.parametrize(("row", "match"), [
    ("B,b,1,rough,900", r"column 'rugged', line 3: 'rough' is not a number"),
    ("B,b,,2.0,900", r"column 'cont_africa', line 3: missing"),
    ("B,b,1,2.0,-5", r"column 'rgdppc_2000', line 3: -5 must be positive"),
])
def test_bad_values_are_named_in_the_constructor(tmp_path, row, match):
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "A,a,0,1.0,1200\n" + row + "\n")
    with pytest.raises(DataError, match=match):
        RuggedGDPDataModule(path=str(bad))
