"""Simulation-based calibration (Talts, Betancourt, Simpson, Vehtari & Gelman 2018, arXiv:1804.06788).

For s = 1..N: draw theta_s from the prior, y_s from the model, fit y_s with the recipe's inference (a
sweep over N seeds: every point an ordinary run), and take the rank of theta_s among L posterior draws
(thinned evenly from the stored draws). If the inference is exact the ranks are uniform on {0..L};
a chi-square test on B equal bins of ranks tests that per parameter. The expected coverage of central
posterior intervals at several levels is stored with its binomial standard error.

Record: `<store>/<experiment>/_sweeps/<sweep>.sbc.zarr`, a DataTree:

    /             attrs: kind="nde_lab.sbc", sweep (record path), recipe, simulations, draws (L), bins (B)
    /ranks        rank (simulation, parameter) int, truth (simulation, parameter)
    /uniformity   chi2, dof, p_value (parameter); counts (parameter, bin)
    /coverage     coverage, mcse (parameter, level)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import yaml

from nde_lab.errors import RecipeError
from nde_lab.sweep.record import SWEEPS_DIR

__all__ = ["LEVELS", "open_sbc", "rank_statistics", "run_sbc", "sbc_recipe", "sbc_report"]

LEVELS = (0.5, 0.8, 0.9, 0.95)
PRIOR_DATA = "nde_lab.sweep.sbc_data.PriorPredictiveData"


def sbc_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe with its data replaced by draws from the program's prior predictive on its design."""
    try:
        program = recipe["model"]["init_args"]["program"]
    except (KeyError, TypeError):
        raise RecipeError("sbc needs a Bayesian recipe: model.init_args.program (a ProbProgram) is missing.") from None
    data = recipe.get("data")
    if not isinstance(data, dict) or "class_path" not in data:
        raise RecipeError("sbc needs the recipe's data module (data.class_path) for the design of the simulations.")
    out = dict(recipe)
    if data["class_path"] == PRIOR_DATA:
        out["data"] = {"class_path": PRIOR_DATA, "init_args": {**data.get("init_args", {}), "program": program}}
    else:
        out["data"] = {"class_path": PRIOR_DATA, "init_args": {"program": program, "base": data, "seed": 0}}
    return out


def rank_statistics(ranks: np.ndarray, draws: int, bins: int) -> dict[str, np.ndarray]:
    """Chi-square uniformity of `ranks` (simulation, parameter) in {0..draws} over `bins` equal bins."""
    from scipy import stats

    if (draws + 1) % bins:
        raise ValueError(f"bins ({bins}) must divide the {draws + 1} possible ranks (draws + 1).")
    binned = ranks * bins // (draws + 1)
    counts = np.stack([np.bincount(binned[:, j], minlength=bins) for j in range(ranks.shape[1])])
    expected = ranks.shape[0] / bins
    chi2 = ((counts - expected) ** 2 / expected).sum(axis=1)
    return {"counts": counts, "chi2": chi2, "dof": np.full(ranks.shape[1], bins - 1),
            "p_value": stats.chi2.sf(chi2, bins - 1)}


def _draws_of(run_dir: str, labels: list[str]) -> dict[str, np.ndarray]:
    """Every stored posterior draw (chains flattened) per scalar label (`a`, `z[0]`, as `truth_labels`)."""
    from nde_lab.run import open_run

    post = open_run(run_dir).posterior
    out: dict[str, np.ndarray] = {}
    for name in post.data_vars:
        x = post[name].transpose("chain", "draw", ...).values
        flat = x.reshape(-1, *x.shape[2:])
        for idx in np.ndindex(flat.shape[1:]):
            label = f"{name}[{','.join(map(str, idx))}]" if idx else str(name)
            out[label] = flat[(slice(None), *idx)]
    missing = [lb for lb in labels if lb not in out]
    if missing:
        raise RecipeError(f"run {run_dir} has no posterior draws of {missing}.")
    return out


def run_sbc(recipe: str | os.PathLike, simulations: int, *, draws: int = 99, bins: int | None = None,
            levels: Sequence[float] = LEVELS, executor: Any = "local", workers: int = 1, scheduler: str | None = None,
            store: str | os.PathLike | None = None, experiment: str | None = None, name: str | None = None,
            extra_args: Sequence[str] = ()) -> xr.DataTree:
    """Run SBC of a Bayesian recipe over `simulations` prior draws; returns (and stores) the SBC DataTree.

    Args:
        recipe: a Bayesian recipe (model.init_args.program + inference task + a data module whose design
            the simulations reuse).
        simulations: N, the number of prior draws (each one fit; N >= 2).
        draws: L, posterior draws per fit the rank is taken among (thinned evenly from the stored ones).
        bins: B for the chi-square test (must divide L + 1; default the largest of 20, 10, 5, 4, 2 that
            divides L + 1 and leaves >= 5 simulations per bin).
        levels: central-interval levels whose coverage is stored.
        executor, workers, scheduler, store, experiment, name, extra_args: as in `run_sweep`.
    """
    from nde_lab.store.layout import resolve_store
    from nde_lab.store.writer import write_tree
    from nde_lab.sweep.run import run_sweep
    from nde_lab.sweep.sbc_data import TRUTH_PREFIX

    path = Path(recipe).expanduser().resolve()
    if not path.is_file():
        raise RecipeError(f"--config {recipe}: no such recipe file.")
    if simulations < 2 or draws < 1:
        raise RecipeError(f"--simulations must be >= 2 and --draws >= 1; got {simulations} and {draws}.")
    if bins is None:
        bins = next((b for b in (20, 10, 5, 4, 2) if (draws + 1) % b == 0 and simulations / b >= 5), 2 if (draws + 1) % 2 == 0 else 1)
    if bins < 2 or (draws + 1) % bins:
        raise RecipeError(f"--bins {bins} must be >= 2 and divide draws + 1 = {draws + 1}.")
    derived = sbc_recipe(yaml.safe_load(path.read_text()))
    experiment = experiment or f"{path.stem}-sbc"
    recipe_dir = resolve_store(store) / experiment / SWEEPS_DIR
    recipe_dir.mkdir(parents=True, exist_ok=True)
    derived_path = recipe_dir / f"{path.stem}.sbc.yaml"
    derived_path.write_text(f"# {path}, data drawn from the prior predictive (written by nde-lab sbc)\n"
                            + yaml.safe_dump(derived, sort_keys=False))
    sweep = run_sweep(derived_path, {}, seeds=simulations, executor=executor, workers=workers, scheduler=scheduler,
                      store=store, experiment=experiment, name=name, extra_args=extra_args)
    runs = sweep.runs
    complete = [str(p) for p, s in zip(runs["run_path"].values, runs["status"].values, strict=True) if s == "complete"]
    if len(complete) < 2:
        raise RecipeError(f"sbc: only {len(complete)} of {simulations} fits completed; see {sweep.path}/runs.")
    truths, ranks, covered = [], [], []
    labels: list[str] = []
    for run_dir in complete:
        from nde_lab.run import open_run

        attrs = open_run(run_dir).tree["observed_data"].attrs
        truth = {k[len(TRUTH_PREFIX):]: float(v) for k, v in attrs.items() if k.startswith(TRUTH_PREFIX)}
        labels = labels or sorted(truth)
        post = _draws_of(run_dir, labels)
        m = len(post[labels[0]])
        keep = np.linspace(0, m - 1, draws).round().astype(int)
        truths.append([truth[lb] for lb in labels])
        ranks.append([int((post[lb][keep] < truth[lb]).sum()) for lb in labels])
        covered.append([[bool(np.quantile(post[lb], (1 - q) / 2) <= truth[lb] <= np.quantile(post[lb], (1 + q) / 2))
                         for q in levels] for lb in labels])
    rank_arr, n = np.array(ranks), len(complete)
    stats = rank_statistics(rank_arr, draws, bins)
    cov = np.array(covered, dtype=float).mean(axis=0)
    sims = np.arange(n)
    groups = {
        "ranks": xr.Dataset({"rank": (("simulation", "parameter"), rank_arr), "truth": (("simulation", "parameter"), np.array(truths))},
                            coords={"simulation": sims, "parameter": labels, "run_path": ("simulation", complete)}),
        "uniformity": xr.Dataset({"chi2": ("parameter", stats["chi2"]), "dof": ("parameter", stats["dof"]),
                                  "p_value": ("parameter", stats["p_value"]),
                                  "counts": (("parameter", "bin"), stats["counts"])},
                                 coords={"parameter": labels, "bin": np.arange(bins)},
                                 attrs={"test": "Pearson chi-square of binned ranks against uniform"}),
        "coverage": xr.Dataset({"coverage": (("parameter", "level"), cov), "mcse": (("parameter", "level"), np.sqrt(cov * (1 - cov) / n))},
                               coords={"parameter": labels, "level": list(levels)},
                               attrs={"interval": "central posterior interval from every stored draw"}),
    }
    attrs = {"kind": "nde_lab.sbc", "sweep": str(sweep.path), "recipe": str(path), "simulations": simulations,
             "complete": n, "draws": draws, "bins": bins, "reference": "Talts et al. 2018, arXiv:1804.06788"}
    out = sweep.path.with_name(sweep.path.name.removesuffix(".zarr") + ".sbc.zarr")
    write_tree(groups, out, attrs)
    print(f"nde-lab sbc: {out}", file=sys.stderr)
    return open_sbc(out)


def open_sbc(path: str | os.PathLike) -> xr.DataTree:
    """Open a stored SBC record (see the module docstring for its groups)."""
    return xr.open_datatree(Path(path), engine="zarr", consolidated=False, zarr_format=3)


def sbc_report(tree: xr.DataTree) -> list[str]:
    """One line per parameter: chi-square p-value and coverage at each level."""
    uni, cov = tree["uniformity"], tree["coverage"]
    lines = []
    for p in uni["parameter"].values:
        c = ", ".join(f"{lv:g}: {float(cov['coverage'].sel(parameter=p, level=lv)):.2f}" for lv in cov["level"].values)
        lines.append(f"  {p}: chi2 = {float(uni['chi2'].sel(parameter=p)):.1f} (dof {int(uni['dof'].sel(parameter=p))}), "
                     f"p = {float(uni['p_value'].sel(parameter=p)):.3g}; coverage {c}")
    return lines

