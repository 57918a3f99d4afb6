"""`nde-lab` entry point: light subcommands from a table, the LightningCLI for the training verbs.

Light commands (listing, showing, plotting, sweeps, housekeeping) live in their own modules under
`nde_lab/commands/`, each exposing `main(argv: list[str]) -> int`, and are registered in `COMMANDS`.
They are dispatched before Lightning is imported, so they start fast. Everything else (`fit`,
`validate`, `test`, `predict`, `--help` of those) goes to `nde_lab.cli.main`.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

#: subcommand -> (module implementing `main(argv) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "gc": ("nde_lab.commands.gc", "remove dead leftovers of interrupted runs and saves from the store"),
    "sweep": ("nde_lab.commands.sweep", "run a recipe over a grid of settings and seeds (local pool or Dask)"),
    "sbc": ("nde_lab.commands.sbc", "simulation-based calibration of a Bayesian recipe's inference"),
}


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 1 a run failed, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        module = importlib.import_module(COMMANDS[argv[0]][0])
        return int(module.main(argv[1:]) or 0)
    from nde_lab.cli import main as lightning_main

    return lightning_main(argv)

