"""README's recipe figures are multi-seed and asserted (issue 9).

`tox -e figures` (benchmarks/figures.py) writes each figure's across-seed mean and spread to
docs/figures.json; README quotes `mean ± sd` from there (checked here, fast), and a full-budget fit of
seed 0 of every recipe must land inside the 95% prediction interval of that spread (slow: here for the
recipes no other test fits at full budget; the others call `check_figures` in their own full-budget
tests: spiral_node, ou_fit, nile_ou, gbm_latent_sde, lotka_volterra_bayes).
"""

from __future__ import annotations

import re

import pytest
from cli import REPO, RECIPES, run_cli
from figures_check import check_figures

import nde_lab
from benchmarks.figures import FIGURES, load, render

#: README recipe-table rows with no figure of their own, and why
NO_FIGURES = {
    "lotka_volterra_nuts": "hours per fit; it is the reference the fast posterior is tested against",
    "sbc_linear_regression": "its figure is a test outcome (p > 0.01), asserted by tests/test_sbc.py",
}
#: recipes whose full-budget fit no other test makes (the others check their figures in their own tests)
FITTED_HERE = ["lotka_volterra_node", "rugged_regression", "rugged_regression_svi", "bayes_neural_ode",
               "flow_8gaussians", "cnf_checkerboard", "vae_digits"]


def _readme_rows() -> dict[str, str]:
    """README's recipe table: {recipe stem: the whole row}."""
    text = (REPO / "README.md").read_text()
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)\.yaml` \|.*$", text, re.M)}


def test_every_readme_figure_is_quoted_from_the_multi_seed_table():
    stored, rows = load(), _readme_rows()
    assert stored["_meta"]["seeds"] >= 3
    for fig in FIGURES:
        stats = stored[f"{fig.recipe}/{fig.scalar}"]
        assert stats["n"] >= 3, (fig, stats)
        quoted = render(stats["mean"], stats["sd"], fig.digits)
        assert quoted in rows[fig.recipe], f"README's {fig.recipe} row should quote {fig.label} as {quoted!r}"


def test_every_recipe_row_has_figures_or_a_reason():
    with_figures = {f.recipe for f in FIGURES}
    assert set(_readme_rows()) == with_figures | set(NO_FIGURES)
    assert not with_figures & set(NO_FIGURES)
    # every recipe is either fitted at full budget here or by its own test (which calls check_figures)
    own = {"spiral_node", "ou_fit", "nile_ou", "gbm_latent_sde", "lotka_volterra_bayes"}
    assert with_figures == set(FITTED_HERE) | own
    for name in own:
        assert any("check_figures(\"" + name in p.read_text() for p in (REPO / "tests").glob("test_*.py")), name


@pytest.mark.slow
@pytest.mark.parametrize("recipe", FITTED_HERE)
def test_seed_zero_at_full_budget_lands_in_the_stated_spread(recipe, tmp_path):
    out = run_cli("fit", "--config", str(RECIPES / f"{recipe}.yaml"), "--quiet", store=tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    check_figures(recipe, nde_lab.open_run(tmp_path / recipe / "latest"))
