"""`nde-lab plot RUN [--kind K] [-o FILE.png]`: write a picture of a run (default: its family's first one)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nde_lab.commands._runarg import EXIT_BAD_INPUT, add_run_arguments, open_run_arg

__all__ = ["main"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nde-lab plot", description=__doc__)
    add_run_arguments(parser)
    parser.add_argument("--kind", default=None,
                        help="trajectories, phase, density, images, training, trace, rank, pair or predictive "
                             "(default: the family's first picture; `--kind list` lists this run's)")
    parser.add_argument("-o", "--output", default=None,
                        help="PNG file to write (default: ./<experiment>_<run_id>_<kind>.png)")
    parser.add_argument("--dpi", type=int, default=100)
    args = parser.parse_args(argv)
    run = open_run_arg(args.run, args.store)
    if run is None:
        return EXIT_BAD_INPUT
    import matplotlib

    matplotlib.use("Agg")
    from nde_lab.plot import DEFAULT_KINDS, available_kinds, plot_run

    kinds = available_kinds(run)
    if args.kind == "list":
        print("\n".join(kinds))
        return 0
    kind = args.kind or DEFAULT_KINDS.get(str(run.attrs.get("model_family")))
    if kind not in kinds:
        kind = kind if args.kind else ("training" if "training" in kinds else None)
    try:
        fig = plot_run(run, kind)
    except (ValueError, ModuleNotFoundError) as err:
        print(f"nde-lab: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    attrs = run.attrs
    output = Path(args.output or f"{attrs.get('experiment', 'run')}_{attrs.get('run_id', run.path.name)}_{kind}.png")
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=args.dpi)
    print(output)
    return 0
