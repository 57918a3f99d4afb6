"""README's recipe figures over seeds: `tox -e figures` (or `python -m benchmarks.figures`).

Every figure in README's recipe table is the across-seed mean and spread of one stored scalar of the
recipe's run (the sweep record's names, `nde_lab.sweep.record`): each recipe runs at its full budget
through `nde-lab sweep --seeds N` (seed index s moves every seed of the recipe by s; s = 0 is the
recipe as written), and the scalar's n, mean, sd (ddof 1), min, max and per-seed values go to
`docs/figures.json`, with a readable table in `docs/figures.md`. README quotes `mean ± sd` as
`render` formats it; `tests/test_figures.py` checks that README quotes exactly these, and its slow
tests refit seed 0 and check it against the 95% prediction interval of the stored spread.

Usage (about 40 min of one core per seed set; sweeps resume from the store if interrupted):

    OMP_NUM_THREADS=1 python -m benchmarks.figures --seeds 3 --workers 2 [--only spiral_node ou_fit]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
JSON_OUT = ROOT / "docs" / "figures.json"
MD_OUT = ROOT / "docs" / "figures.md"
STORE = ROOT / "build" / "figures-store"

__all__ = ["FIGURES", "Figure", "load", "prediction_interval", "render"]


@dataclass(frozen=True)
class Figure:
    """One README figure: `scalar` of `recipe`'s run (a sweep-record scalar name), shown as `label`."""

    recipe: str
    scalar: str
    label: str
    digits: int  # decimals README shows
    resolution: float = 0.0  # the smallest step the statistic can take (a share of k observations: 1/k)


#: README's recipe table, figure by figure (recipes absent here have no number: NUTS hours, SBC's p-value)
FIGURES: tuple[Figure, ...] = (
    Figure("spiral_node", "solver_stats.full_series_mae", "full-trajectory MAE", 3),
    Figure("lotka_volterra_node", "solver_stats.full_series_mae", "full-series MAE (thousand pelts)", 2),
    Figure("ou_fit", "parameters.theta", "θ", 3),
    Figure("ou_fit", "parameters.mu", "μ", 3),
    Figure("ou_fit", "parameters.sigma", "σ", 4),
    Figure("nile_ou", "parameters.theta", "θ (/yr)", 3),
    Figure("nile_ou", "parameters.mu", "μ", 0),
    Figure("nile_ou", "parameters.sigma", "σ", 0),
    Figure("gbm_latent_sde", "summary.coverage_90", "90% band coverage of held-out observations", 3),
    Figure("lotka_volterra_bayes", "posterior_mean.alpha", "α", 3),
    Figure("lotka_volterra_bayes", "posterior_mean.beta", "β", 5),
    Figure("lotka_volterra_bayes", "posterior_mean.gamma", "γ", 3),
    Figure("lotka_volterra_bayes", "posterior_mean.delta", "δ", 5),
    Figure("lotka_volterra_bayes", "attrs.pareto_k", "Pareto k", 2),
    Figure("sir_boarding_school", "posterior_mean.beta", "β", 3),
    Figure("sir_boarding_school", "posterior_mean.gamma", "γ", 3),
    Figure("sir_boarding_school", "posterior_mean.phi", "φ", 2),
    Figure("sir_boarding_school", "attrs.pareto_k", "Pareto k", 2),
    *(Figure(recipe, f"posterior_mean.{p}", p, 3) for recipe in ("rugged_regression", "rugged_regression_svi")
      for p in ("a", "bA", "bR", "bAR", "sigma")),
    Figure("bayes_neural_ode", "attrs.coverage_90", "90% predictive band coverage", 3, resolution=1 / 42),
    Figure("flow_8gaussians", "metrics.val_nll", "held-out NLL (nats)", 3),
    Figure("cnf_checkerboard", "metrics.val_nll", "held-out NLL (nats)", 3),
    Figure("vae_digits", "metrics.val_elbo", "held-out ELBO (nats/image)", 2),
    Figure("vae_digits", "metrics.val_iwae", "held-out IWAE (nats/image)", 2),
    Figure("vae_digits", "metrics.baseline_nll", "independent-pixel baseline NLL (nats/image)", 1),
)


def render(mean: float, sd: float, digits: int) -> str:
    """How README writes a figure: `mean ± sd` at `digits` decimals."""
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def prediction_interval(stats: dict, level: float = 0.95) -> tuple[float, float]:
    """The `level` prediction interval of one more seed, mean ± t(n-1) sd sqrt(1 + 1/n), from n seeds."""
    from scipy import stats as st

    n, mean, sd = stats["n"], stats["mean"], stats["sd"]
    half = st.t.ppf((1 + level) / 2, n - 1) * sd * math.sqrt(1 + 1 / n)
    return mean - half, mean + half


def load(path: Path = JSON_OUT) -> dict[str, dict]:
    """docs/figures.json: {"<recipe>/<scalar>": {n, mean, sd, min, max, values}} plus "_meta"."""
    return json.loads(path.read_text())


def _summary(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    return {"n": int(finite.size), "mean": float(finite.mean()), "sd": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
            "min": float(finite.min()), "max": float(finite.max()), "values": [float(v) for v in values]}


def run(recipes: list[str], seeds: int, workers: int) -> dict[str, dict]:
    """Sweep each recipe over `seeds` seeds at full budget; the figures' summaries by "<recipe>/<scalar>"."""
    from nde_lab.sweep.run import run_sweep

    out: dict[str, dict] = {}
    for recipe in recipes:
        start = time.perf_counter()
        sweep = run_sweep(ROOT / "recipes" / f"{recipe}.yaml", {}, seeds=seeds, executor="local", workers=workers,
                          store=STORE, experiment=f"figures-{recipe}", name=f"seeds{seeds}")
        scalars = sweep.scalars
        for fig in (f for f in FIGURES if f.recipe == recipe):
            if fig.scalar not in scalars:  # reported, and the other recipes still run
                print(f"{recipe}: no scalar {fig.scalar!r}; the run has {sorted(scalars.data_vars)}", flush=True)
                continue
            out[f"{recipe}/{fig.scalar}"] = _summary(scalars[fig.scalar].values.ravel())
        print(f"{recipe}: {seeds} seeds in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def write(figures: dict[str, dict], seeds: int) -> None:
    """Merge `figures` into docs/figures.json and rewrite docs/figures.md from it."""
    data = load() if JSON_OUT.exists() else {}
    data.update(figures)
    data["_meta"] = {"seeds": seeds, "written": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
                     "command": "OMP_NUM_THREADS=1 python -m benchmarks.figures"}
    JSON_OUT.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    lines = ["# Recipe figures over seeds", "",
             f"Written by `tox -e figures` on {data['_meta']['written']} ({seeds} seeds per recipe, full budgets, "
             "one torch thread). README's recipe table quotes `mean ± sd`; seed 0 is the recipe as written.", "",
             "| recipe | figure | scalar | mean ± sd | min | max | n | per seed |", "|---|---|---|---|---|---|---|---|"]
    for fig in FIGURES:
        s = data.get(f"{fig.recipe}/{fig.scalar}")
        if s is None:
            continue
        d = fig.digits + 1
        lines.append(f"| `{fig.recipe}` | {fig.label} | `{fig.scalar}` | {render(s['mean'], s['sd'], fig.digits)} | "
                     f"{s['min']:.{d}f} | {s['max']:.{d}f} | {s['n']} | {', '.join(f'{v:.{d}f}' for v in s['values'])} |")
    MD_OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {JSON_OUT} and {MD_OUT}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="recipes to run (default: every recipe in FIGURES)")
    args = parser.parse_args()
    recipes = args.only or list(dict.fromkeys(f.recipe for f in FIGURES))
    write(run(recipes, args.seeds, args.workers), args.seeds)


if __name__ == "__main__":
    main()
