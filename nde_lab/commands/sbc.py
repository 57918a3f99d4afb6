"""`nde-lab sbc`: simulation-based calibration of a Bayesian recipe's inference (Talts et al. 2018).

    nde-lab sbc --config recipes/sbc_linear_regression.yaml --simulations 100 [--draws 99] [--bins 10] \
        [--executor local|dask|inprocess] [--workers K] [--scheduler ADDRESS] [--store S] [--experiment E] \
        [any fit option shared by every fit]

Prints the chi-square p-value of rank uniformity and the central-interval coverage per parameter and
the path of the SBC record. Exit status: 0 done, 1 some fits failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="nde-lab sbc", description=__doc__.split("\n\n")[0],
                                epilog="Unrecognised options are passed to every fit.")
    p.add_argument("--config", required=True, help="a Bayesian recipe")
    p.add_argument("--simulations", type=int, required=True, help="prior draws, each simulated and fitted")
    p.add_argument("--draws", type=int, default=99, help="posterior draws the rank is taken among (L)")
    p.add_argument("--bins", type=int, default=None, help="bins of the chi-square test (must divide L + 1)")
    p.add_argument("--executor", choices=["local", "dask", "inprocess"], default="local")
    p.add_argument("--scheduler", default=None)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--store", default=None)
    p.add_argument("--experiment", default=None)
    p.add_argument("--name", default=None)
    args, extra = p.parse_known_args(argv)
    from nde_lab.errors import NdeLabError

    try:
        from nde_lab.sweep.sbc import run_sbc, sbc_report

        tree = run_sbc(args.config, args.simulations, draws=args.draws, bins=args.bins, executor=args.executor,
                       workers=args.workers, scheduler=args.scheduler, store=args.store,
                       experiment=args.experiment, name=args.name, extra_args=extra)
    except (NdeLabError, ValueError, FileNotFoundError) as err:
        print(f"nde-lab sbc: error: {err}", file=sys.stderr)
        return 2
    for line in sbc_report(tree):
        print(line)
    print(tree.attrs.get("sweep", "").removesuffix(".zarr") + ".sbc.zarr")
    return 1 if int(tree.attrs["complete"]) < int(tree.attrs["simulations"]) else 0
