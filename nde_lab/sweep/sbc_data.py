"""Data simulated from a program's prior predictive (for simulation-based calibration), and an inline
regression design.

`PriorPredictiveData(program, base, seed)` takes the design of `base` (its covariates, or its
observation times), draws the parameters from the program's priors and the data from its likelihood
(seeded, without touching the global RNG state), and keeps the drawn truth in the data's attrs as
`sbc_truth.<label>` (labels as in the run's `summary`: `a`, `z[0]`), which the run stores in
`observed_data` attrs.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pyro
import torch

from nde_lab.data.tabular import BayesDataModule
from nde_lab.errors import DataError
from nde_lab.prob.data import SeriesData, TabularData
from nde_lab.prob.inference import sample_prior
from nde_lab.prob.programs import ProbProgram

__all__ = ["TRUTH_PREFIX", "InlineTableDataModule", "PriorPredictiveData", "truth_labels"]

TRUTH_PREFIX = "sbc_truth."


def truth_labels(name: str, value: np.ndarray) -> dict[str, float]:
    """Scalar labels of one parameter draw: `name` for a scalar, `name[i]` / `name[i,j]` otherwise."""
    value = np.asarray(value, dtype=float)
    if value.ndim == 0:
        return {name: float(value)}
    return {f"{name}[{','.join(map(str, idx))}]": float(value[idx]) for idx in np.ndindex(value.shape)}


class InlineTableDataModule(BayesDataModule):
    """A regression table written in the recipe: covariates `x` (rows of K numbers) and response `y`
    (default zeros: a design for simulated data)."""

    def __init__(self, x: list[list[float]], feature_names: list[str] | None = None, y: list[float] | None = None,
                 steps_per_epoch: int = 50) -> None:
        super().__init__(steps_per_epoch=steps_per_epoch)
        self.x = np.asarray(x, dtype=float)
        if self.x.ndim != 2 or self.x.shape[0] < 1:
            raise DataError(f"data.x must be a list of rows of numbers (N, K), got shape {self.x.shape}.")
        self.feature_names = feature_names or [f"x{k}" for k in range(self.x.shape[1])]
        self.y = np.zeros(self.x.shape[0]) if y is None else np.asarray(y, dtype=float)

    def load(self) -> TabularData:
        return TabularData(x=self.x, y=self.y, feature_names=list(self.feature_names), source="data.init_args")


class PriorPredictiveData(BayesDataModule):
    """Observations drawn from `program`'s prior predictive on `base`'s design (see the module docstring).

    Args:
        program: the probabilistic program (the same one the task fits).
        base: a Bayesian data module giving the design (covariates or times; its response is ignored).
        seed: the simulation's seed (one simulation per seed).
        steps_per_epoch: optimiser steps per epoch (default: the base module's).
    """

    def __init__(self, program: ProbProgram, base: BayesDataModule, seed: int = 0,
                 steps_per_epoch: int | None = None) -> None:
        super().__init__(steps_per_epoch=steps_per_epoch or base.steps_per_epoch)
        self.program, self.base, self.seed = copy.deepcopy(program), base, seed

    def load(self) -> SeriesData | TabularData:
        design = self.base.observations
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            with torch.random.fork_rng(devices=[]):
                pyro.set_rng_seed(self.seed)
                self.program.bind(design)
                with torch.no_grad():
                    params, y = sample_prior(self.program, 1)
        finally:
            torch.set_default_dtype(previous)
        truth = {}
        for name, value in params.items():
            truth.update(truth_labels(name, value[0].numpy()))
        attrs = {**design.attrs, **{TRUTH_PREFIX + k: v for k, v in truth.items()}, "sbc_seed": self.seed}
        if isinstance(design, TabularData):
            return dataclasses.replace(design, y=y[0].numpy(), attrs=attrs, source=f"prior predictive (seed {self.seed})")
        return dataclasses.replace(design, values=y[0].numpy(), attrs=attrs, source=f"prior predictive (seed {self.seed})")
