"""README's recipe figures are multi-seed and asserted (issue 9).

`tox -e figures` (benchmarks/figures.py) writes each figure's across-seed mean and spread to
docs/figures.json; README quotes `mean ± sd` from there (checked here, fast), and a full-budget fit of
seed 0 of every recipe must land inside the 95% prediction interval of that spread (slow, in the
recipe's own end-to-end test, which calls `check_figures` on its full-budget run).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import xarray as xr
from cli import REPO
from figures_check import FIGURES, check_figures, load, prediction_interval, render

#: README recipe-table rows with no figure of their own, and why
NO_FIGURES = {
    "lotka_volterra_nuts": "exact NUTS, minutes per fit (docs/benchmarks.md, bench_nuts); the fast posterior is tested against its long reference",
    "sbc_linear_regression": "its figure is a test outcome (p > 0.01), asserted by tests/test_sbc.py",
    "damped_oscillator": "its figure is a test outcome (agreement with its long NUTS reference, true values inside the "
                         "99% intervals), asserted by tests/test_oscillator_reference.py",
}


def _readme_rows() -> dict[str, str]:
    """README's recipe table (section "## Recipes"): {recipe stem: the whole row}."""
    text = (REPO / "README.md").read_text().split("\n## Recipes\n", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)\.yaml` \|.*$", text, re.M)}


def test_every_readme_figure_is_quoted_from_the_multi_seed_table():
    stored, rows = load(), _readme_rows()
    assert stored["_meta"]["seeds"] >= 3
    for fig in FIGURES:
        stats = stored[f"{fig.recipe}/{fig.scalar}"]
        assert stats["n"] >= 3, (fig, stats)
        quoted = render(stats["mean"], stats["sd"], fig.digits)
        assert quoted in rows[fig.recipe], f"README's {fig.recipe} row should quote {fig.label} as {quoted!r}"


def test_every_recipe_row_has_figures_or_a_reason_and_a_full_budget_test():
    with_figures = {f.recipe for f in FIGURES}
    assert set(_readme_rows()) == with_figures | set(NO_FIGURES)
    assert not with_figures & set(NO_FIGURES)
    # each recipe's own end-to-end test fits it at full budget and checks its figures
    sources = "\n".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
    for name in with_figures:
        assert f'check_figures("{name}"' in sources, name


def _fake_run(mae: float) -> SimpleNamespace:
    tree = xr.DataTree.from_dict({"/": xr.Dataset(), "/solver_stats": xr.Dataset({"full_series_mae": ((), mae)})})
    return SimpleNamespace(tree=tree)


def test_check_figures_accepts_the_spread_and_rejects_a_value_outside_it():
    stats = load()["spiral_node/solver_stats.full_series_mae"]
    low, high = prediction_interval(stats)
    assert low < stats["mean"] < high and high - low > 2 * stats["sd"]
    assert check_figures("spiral_node", _fake_run(stats["values"][0]))["solver_stats.full_series_mae"] == stats["values"][0]
    with pytest.raises(AssertionError, match="outside the 95% prediction interval"):
        check_figures("spiral_node", _fake_run(high + 0.01))


def _readme_seconds(row: str) -> float | None:
    """The time cell of a README recipe row, "~X s" or "~X min", in seconds; None for other wording."""
    match = re.match(r"~([\d.]+) (s|min)\b", row.split("|")[3].strip())
    if match is None:
        return None
    return float(match.group(1)) * (60.0 if match.group(2) == "min" else 1.0)


def test_readme_times_are_the_measured_ones():
    """README's time column quotes docs/recipe_times.json (`python -m benchmarks.recipe_times`: each recipe's
    full fit, timed on an idle machine) within a factor of `TOLERANCE`."""
    from benchmarks.recipe_times import TOLERANCE, recipes
    from benchmarks.recipe_times import load as load_times

    measured = load_times()
    readme = (REPO / "README.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)\.yaml` \|.*$", readme, re.M)}
    assert set(recipes()) <= set(rows) and set(recipes()) <= set(measured)
    for name in recipes():
        quoted, fit = _readme_seconds(rows[name]), measured[name]
        assert fit["status"] == 0 and quoted is not None, (name, fit, rows[name])
        assert 1 / TOLERANCE <= quoted / fit["seconds"] <= TOLERANCE, (
            f"README says {rows[name].split('|')[3].strip()!r} for {name}; measured {fit['seconds']} s")
