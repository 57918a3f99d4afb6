"""`nde-lab sweep`: one recipe over a grid of settings and seeds; every point is an ordinary run.

    nde-lab sweep --config recipes/ou_fit.yaml --grid model.init_args.transition=exact,euler --seeds 3 \
        [--executor local|dask] [--scheduler tcp://host:8786] [--workers K] [--store S] [--experiment E] \
        [--name NAME] [any fit option shared by every point, e.g. --trainer.max_epochs 2]

Exit status: 0 every point complete, 1 some point failed (recorded with its reason), 2 bad input
(unknown key, bad value, empty grid, unreachable scheduler: nothing was run).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nde-lab sweep", description=__doc__.split("\n\n")[0],
                                epilog="Unrecognised options are passed to every point's `nde-lab fit`.")
    p.add_argument("--config", required=True, help="the recipe YAML")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="a dotted recipe key and its values (repeat for more keys: their product is swept)")
    p.add_argument("--seeds", type=int, default=1, help="seed indices: index s sets every recipe seed to its value + s")
    p.add_argument("--executor", choices=["local", "dask", "inprocess"], default="local",
                   help="local: a pool of processes; dask: Dask distributed; inprocess: one after another here")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address (default: a LocalCluster)")
    p.add_argument("--workers", type=int, default=1, help="points run at once (local pool or LocalCluster workers)")
    p.add_argument("--store", default=None)
    p.add_argument("--experiment", default=None)
    p.add_argument("--name", default=None, help="sweep name (default: a hash of recipe, grid and seeds)")
    p.add_argument("--retries", type=int, default=2, help="Dask retries of a point whose task raised")
    return p


def _summary_lines(sweep) -> list[str]:
    import json

    specs = json.loads(sweep.attrs.get("conclusions", "{}"))
    lines = []
    for name in specs:
        c = sweep.conclusion(name)
        for idx in (c["mean"].to_dataframe().index if c["mean"].dims else [None]):
            sel = c if idx is None else c.sel(dict(zip(c["mean"].dims, idx if isinstance(idx, tuple) else (idx,), strict=True)))
            robust = "" if "robust" not in sel else (" robust" if bool(sel["robust"]) else " NOT robust")
            where = "" if idx is None else f" at {idx}"
            lines.append(f"  {name}{where}: {float(sel['mean']):.4g} +/- {float(sel['sd']):.2g} (sd), "
                         f"95% CI [{float(sel['ci_low']):.4g}, {float(sel['ci_high']):.4g}]{robust}")
    return lines


def main(argv: list[str]) -> int:
    from nde_lab.errors import NdeLabError

    args, extra = _parser().parse_known_args(argv)
    grid = {}
    try:
        from nde_lab.sweep.grid import parse_grid_option

        for option in args.grid:
            key, values = parse_grid_option(option)
            if key in grid:
                raise ValueError(f"--grid {key} given twice.")
            grid[key] = values
        from nde_lab.sweep.run import run_sweep

        sweep = run_sweep(args.config, grid, seeds=args.seeds, executor=args.executor, workers=args.workers,
                          scheduler=args.scheduler, store=args.store, experiment=args.experiment, name=args.name,
                          extra_args=extra, retries=args.retries)
    except (NdeLabError, ValueError, FileNotFoundError) as err:
        print(f"nde-lab sweep: error: {err}", file=sys.stderr)
        return 2
    for line in _summary_lines(sweep):
        print(line)
    print(sweep.path)
    failed = int(sweep.attrs.get("n_failed", 0))
    if failed:
        runs = sweep.runs
        status, failure = runs["status"].values.ravel(), runs["failure"].values.ravel()
        reasons = [str(f) for s, f in zip(status, failure, strict=True) if str(s) != "complete" and f and str(f) != "nan"]
        print(f"nde-lab sweep: {failed} point(s) failed; reasons in {sweep.path}/runs", file=sys.stderr)
        for value in list(dict.fromkeys(reasons))[:5]:
            print(f"  {value}", file=sys.stderr)
        return 1
    return 0
