"""`nde-lab` entry point: light subcommands from a table, the LightningCLI for the training verbs.

Light commands (listing, showing, plotting, sweeps, housekeeping) live in their own modules under
`nde_lab/commands/`, each exposing `main(argv: list[str]) -> int`, and are registered in `COMMANDS`.
They are dispatched before Lightning is imported, so they start fast. Everything else (`fit`,
`validate`, `test`, `predict`, `--help` of those) goes to `nde_lab.cli.main`.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "TRAINING_VERBS", "main", "usage"]

#: subcommand -> (module implementing `main(argv) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "runs": ("nde_lab.commands.runs", "list the runs in the store: status, family, headline metric, parent"),
    "show": ("nde_lab.commands.show", "describe one run: headline numbers, groups, metrics, lineage, failure"),
    "plot": ("nde_lab.commands.plot", "write a PNG of a run (trajectories, density, posterior, training, ...)"),
    "gc": ("nde_lab.commands.gc", "remove dead leftovers of interrupted runs and saves from the store"),
    "sweep": ("nde_lab.commands.sweep", "run a recipe over a grid of settings and seeds (local pool or Dask)"),
    "sbc": ("nde_lab.commands.sbc", "simulation-based calibration of a Bayesian recipe's inference"),
}

#: the LightningCLI subcommands (each makes a run in the store)
TRAINING_VERBS: dict[str, str] = {
    "fit": "train a recipe: nde-lab fit --config recipes/NAME.yaml [--key.path value ...]",
    "validate": "evaluate a checkpoint on the validation data (--ckpt_path ...)",
    "test": "evaluate a checkpoint on the test data (--ckpt_path ...)",
    "predict": "predict with a checkpoint (--ckpt_path ...)",
}


def usage() -> str:
    """The top-level help (served without importing Lightning or torch)."""
    width = max(map(len, [*COMMANDS, *TRAINING_VERBS]))
    lines = ["usage: nde-lab COMMAND [options]   (nde-lab COMMAND --help for a command's options)", "",
             "training (each leaves a run in the store: --store, else $NDE_LAB_STORE, else ./store):"]
    lines += [f"  {name:<{width}}  {text}" for name, text in TRAINING_VERBS.items()]
    lines += ["", "runs:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "exit status: 0 ok, 1 a run failed (kept, marked failed), 2 bad input (nothing created)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 1 a run failed, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    from nde_lab.cli import main as lightning_main

    return lightning_main(argv)

