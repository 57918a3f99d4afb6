"""Handing runs to other libraries: ArviZ (both generations).

ArviZ 0.2x reads an `InferenceData`, built here with `arviz.from_datatree`; ArviZ 1.x works on an
xarray `DataTree` directly (and has no `from_datatree`). `to_arviz` returns what the installed ArviZ
takes, holding the run's ArviZ groups (covariates are in `constant_data`, so `plot_ppc` and `loo`
see only observed outcomes in `observed_data`).
"""

from __future__ import annotations

from typing import Any

import xarray as xr

__all__ = ["ARVIZ_GROUPS", "to_arviz"]

#: groups of the run that follow ArviZ's InferenceData schema
ARVIZ_GROUPS = ("posterior", "posterior_predictive", "prior", "prior_predictive", "log_likelihood", "sample_stats",
                "observed_data", "constant_data")


def to_arviz(run: Any) -> Any:
    """The run's ArviZ groups as `arviz.InferenceData` (ArviZ < 1) or an `xarray.DataTree` (ArviZ >= 1).

    Raises `ValueError` when the run has no posterior or prior (it is not a Bayesian run).
    """
    import arviz as az

    present = [g for g in ARVIZ_GROUPS if g in run.groups]
    if not {"posterior", "prior"} & set(present):
        raise ValueError(f"run has no posterior or prior group for ArviZ; it has {sorted(run.groups)}.")
    tree = xr.DataTree.from_dict({"/": xr.Dataset(attrs={}), **{f"/{g}": run.group(g) for g in present}})
    major = int(str(az.__version__).split(".")[0])
    return tree if major >= 1 else az.from_datatree(tree)
