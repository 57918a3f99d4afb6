"""Runs that build on runs: `--from_run RUN` and `nde-lab fit --resume RUN` expanded before parsing.

Both take the parent's recipe (`config.yaml`, minus its run name, checkpoint and allow-list) and its
`checkpoints/last.ckpt`, and make a *new* run in the parent's store and experiment (earlier runs are
never overwritten) whose root attrs name the parent (`parent_run_id`, `parent_path`, `lineage`).
The metric history comes forward with the checkpoint (`MetricsRecorder` is part of it).

- `--from_run RUN`: fit (continue training from the checkpoint), validate, test or predict. RUN is a
  run directory or `<store>/<experiment>/latest`.
- `--resume RUN` (fit only): continue a killed or failed run exactly; RUN may be the hidden
  `.RUN_ID.partial` directory a killed run leaves, or its final name.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nde_lab.checkpoints import CheckpointError, check_checkpoint_path
from nde_lab.errors import StoreError
from nde_lab.store.layout import CHECKPOINT_DIR, CONFIG_FILE, ZARR_NAME, partial_name

__all__ = ["Lineage", "expand_run_arguments"]

LAST = "last.ckpt"
#: recipe keys of the parent that do not carry over to the child
_DROPPED = ("run_name", "ckpt_path", "from_run", "resume", "allow_import", "config", "return_predictions", "verbose",
            "weights_only", "allow_untrained")


@dataclass
class Lineage:
    """The parent of the run being made and how it is used."""

    kind: str  # "from_run" or "resume"
    parent: Path
    checkpoint: Path
    tmpdir: tempfile.TemporaryDirectory = field(repr=False)

    def attrs(self) -> dict[str, str]:
        run_id = self.parent.name
        if run_id.startswith(".") and run_id.endswith(".partial"):
            run_id = run_id[1:].removesuffix(".partial")
        return {"parent_run_id": run_id, "parent_experiment": self.parent.parent.name,
                "parent_path": str(self.parent), "lineage": self.kind}


def _find_run(value: str) -> Path:
    from nde_lab.store.reader import resolve_run_dir

    path = Path(value).expanduser()
    if not path.exists() and path.name != "latest":
        hidden = path.parent / partial_name(path.name)
        if (hidden / CONFIG_FILE).exists():  # a killed run: never published, still hidden
            return hidden.resolve()
    return resolve_run_dir(path).resolve()


def _flag(argv: list[str], name: str) -> tuple[str | None, int | None]:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1], i
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1], i
    return None, None


def expand_run_arguments(argv: list[str]) -> tuple[list[str], Lineage | None]:
    """Rewrite `argv` for `--from_run` / `--resume`: the parent's recipe first (later flags override it),
    its store, and its last checkpoint unless `--ckpt_path` is given. Raises `StoreError` /
    `CheckpointError` (exit 2) when the parent is not a usable run."""
    if not argv or argv[0].startswith("-"):
        return argv, None
    subcommand = argv[0]
    from_run, _ = _flag(argv, "--from_run")
    resume, _ = _flag(argv, "--resume")
    if from_run is None and resume is None:
        return argv, None
    if from_run is not None and resume is not None:
        raise StoreError("give either --from_run or --resume, not both.")
    if resume is not None and subcommand != "fit":
        raise StoreError(f"--resume continues training and applies to 'nde-lab fit' only, not {subcommand!r}; "
                         "use --from_run RUN to evaluate a run.")
    parent = _find_run(from_run if from_run is not None else resume)
    if resume is not None and (parent / ZARR_NAME).exists() and not parent.name.endswith(".partial"):
        import zarr

        status = dict(zarr.open_group(str(parent / ZARR_NAME), mode="r", zarr_format=3).attrs).get("status")
        if status == "complete":
            raise StoreError(f"run {str(parent)!r} is complete; there is nothing to resume. "
                             "Use --from_run RUN to continue training it as a new run.")
    checkpoint = parent / CHECKPOINT_DIR / LAST
    if not checkpoint.exists():
        raise CheckpointError(f"run {str(parent)!r} has no checkpoint {str(checkpoint)!r} to continue from "
                              "(it stopped before its first epoch ended).")
    check_checkpoint_path(checkpoint)
    recipe = yaml.safe_load((parent / CONFIG_FILE).read_text()) or {}
    if not isinstance(recipe, dict):
        raise StoreError(f"{str(parent / CONFIG_FILE)!r} is not a recipe mapping.")
    for key in _DROPPED:
        recipe.pop(key, None)
    experiment = parent.parent.name
    recipe["experiment"] = recipe.get("experiment") or experiment
    tmpdir = tempfile.TemporaryDirectory(prefix="nde-lab-parent-")
    copy = Path(tmpdir.name) / f"{experiment}.yaml"
    copy.write_text(yaml.safe_dump(recipe, sort_keys=False))
    rest = argv[1:]
    extra = ["--config", str(copy)]
    if _flag(rest, "--store")[0] is None:
        extra += ["--store", str(parent.parent.parent)]
    tail = [] if _flag(rest, "--ckpt_path")[0] is not None else ["--ckpt_path", os.fspath(checkpoint)]
    return [subcommand, *extra, *rest, *tail], Lineage("from_run" if from_run is not None else "resume", parent,
                                                         checkpoint, tmpdir)
