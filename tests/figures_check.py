"""Check one run's README figures against the across-seed spread in docs/figures.json (issue 9).

`benchmarks.figures` (tox -e figures) fits each recipe over several seeds and stores each figure's
mean, sd and per-seed values. A fresh full-budget fit of seed 0 must land inside the 95% prediction
interval of one more seed, mean ± t(0.975, n-1) sd sqrt(1 + 1/n): the tolerance is the spread itself,
widened only by README's own resolution (half a unit of the last quoted digit, or one step of a
discrete statistic such as a share of 42 observations) so a fit the seed does not move (sd 0) still
allows another machine's rounding.
"""

from __future__ import annotations

import sys
from pathlib import Path

from nde_lab.sweep.record import run_scalars

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.figures import FIGURES, load, prediction_interval, render

__all__ = ["FIGURES", "check_figures", "load", "prediction_interval", "render"]


def check_figures(recipe: str, run) -> dict[str, float]:
    """Assert every README figure of `recipe` that `run` (an open Run) carries is inside its prediction
    interval; returns {scalar: value}. Fails if the recipe has no figures or docs/figures.json lacks one."""
    figures = [f for f in FIGURES if f.recipe == recipe]
    assert figures, f"{recipe} has no README figures in benchmarks.figures.FIGURES"
    stored, scalars = load(), run_scalars(run.tree)
    out = {}
    for fig in figures:
        stats = stored[f"{recipe}/{fig.scalar}"]
        value = scalars[fig.scalar]
        low, high = prediction_interval(stats)
        # a spread of (nearly) 0, a fit the seed does not move, still allows another machine's rounding:
        # half a unit of the last digit README quotes, or one step of a discrete statistic
        slack = max(0.5 * 10.0**-fig.digits, fig.resolution * 1.0001)
        assert low - slack <= value <= high + slack, (
            f"{recipe} {fig.label} ({fig.scalar}) = {value:.6g}, outside the 95% prediction interval "
            f"[{low:.6g}, {high:.6g}] of {stats['n']} seeds (mean {stats['mean']:.6g}, sd {stats['sd']:.3g})")
        out[fig.scalar] = value
    return out
