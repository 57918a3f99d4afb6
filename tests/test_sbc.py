"""Simulation-based calibration: an exact posterior passes, a mean-field guide on a correlated posterior fails.

The model (recipes/sbc_linear_regression.yaml): y_i ~ Normal(a + b x_i, 0.3), a, b ~ Normal(0, 1), x in
[4, 6], so a and b have posterior correlation about -0.99 and the mean-field sds are 0.16 of the true ones:
the truth lands in the end bins of ranks about 89% of the time (chi-square p ~ 5e-4 expected at N = 20). Fits run in this process through the sweep
machinery (`executor="inprocess"`: each is a real `nde-lab fit` run in the store).
"""

from __future__ import annotations

import numpy as np
import pytest
from cli import RECIPES

from nde_lab.sweep.plots import plot_ranks
from nde_lab.sweep.sbc import run_sbc

RECIPE = RECIPES / "sbc_linear_regression.yaml"
EXACT: list[str] = []  # the recipe as written: FastPosteriorTask (importance-corrected, exact up to MC error)
MEAN_FIELD = ["--model", "nde_lab.train.bayes.SVITask", "--model.init_args.guide", "AutoNormal",
              "--model.init_args.lr", "0.1", "--model.init_args.num_particles", "4", "--model.init_args.num_chains", "1",
              "--model.init_args.num_draws", "100", "--model.init_args.num_prior_draws", "10",
              "--data.init_args.base.init_args.steps_per_epoch", "60"]


@pytest.mark.slow
def test_sbc_exact_posterior_ranks_are_uniform(tmp_path):
    tree = run_sbc(RECIPE, 30, draws=9, bins=5, executor="inprocess", store=tmp_path, extra_args=EXACT)
    assert tree.attrs["complete"] == 30
    ranks = tree["ranks"]["rank"]
    assert ranks.dims == ("simulation", "parameter") and sorted(ranks["parameter"].values) == ["a", "b"]
    assert ranks.min() >= 0 and ranks.max() <= 9
    p = tree["uniformity"]["p_value"]
    assert (p > 0.01).all(), tree["uniformity"].to_dataset().to_dataframe()
    # truths really vary with the simulation seed and come from the prior N(0, 1)
    truth = tree["ranks"]["truth"].values
    assert np.unique(truth[:, 0]).size == 30 and abs(truth.std() - 1) < 0.4
    cov = tree["coverage"]["coverage"].sel(level=0.9)
    assert (abs(cov - 0.9) < 4 * np.sqrt(0.09 / 30) + 0.02).all()


@pytest.mark.slow
def test_sbc_mean_field_guide_on_correlated_posterior_is_rejected(tmp_path):
    tree = run_sbc(RECIPE, 20, draws=9, bins=5, executor="inprocess", store=tmp_path, extra_args=MEAN_FIELD)
    p = tree["uniformity"]["p_value"]
    assert (p < 0.01).all(), tree["uniformity"].to_dataset().to_dataframe()
    counts = tree["uniformity"]["counts"]
    # overconfident: the truth falls outside the too-narrow posterior, ranks pile up in the end bins
    assert int(counts.isel(bin=[0, -1]).sum()) > 0.8 * int(counts.sum())
    assert (tree["coverage"]["coverage"].sel(level=0.9) < 0.6).all()
    fig = plot_ranks(tree)
    heights = [[bar.get_height() for bar in ax.patches if bar.get_width() < 1] for ax in fig.axes]
    assert np.array_equal(heights, counts.values)
