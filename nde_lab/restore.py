"""Rebuild a stored run's task from its resolved config and its weights (torch weights-only loading)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nde_lab.checkpoints import load_checkpoint
from nde_lab.errors import StoreError
from nde_lab.safety.imports import (
    ImportNotAllowedError,
    allowed_prefixes,
    explain_denied_import,
    import_policy,
)

__all__ = ["LAST_CHECKPOINT", "restore_task"]

LAST_CHECKPOINT = "last.ckpt"


def restore_task(config: dict[str, Any], checkpoint_dir: Path) -> Any:
    """Instantiate `config["model"]` (class_path + init_args) and load `checkpoint_dir/last.ckpt`.

    The checkpoint is read with `torch.load(..., weights_only=True)`: no pickled code runs; class paths
    are resolved under the import allow-list (`nde_lab.safety`), before anything is imported.
    """
    from jsonargparse import ArgumentParser

    from nde_lab.train.base import LabTask

    if "model" not in config:
        raise StoreError("the run's config.yaml has no 'model' section; it was not written by nde-lab fit.")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LabTask, "model", required=True)
    try:
        with import_policy():  # the run's own `allow_import` is not honoured: a shared file cannot allow itself
            parsed = parser.parse_object({"model": config["model"]})
            instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in 4.49
            task = instantiate(parsed).model
    except Exception as err:
        denied = explain_denied_import(str(err), allowed_prefixes())
        if denied:
            raise ImportNotAllowedError(
                f"the run's config.yaml names {denied.removeprefix('class path ')} (Python: wrap the call in "
                "`with nde_lab.safety.allow_imports(PREFIX):`; the run's sources/ folder holds the user modules it used)"
            ) from None
        raise StoreError(f"cannot rebuild the model from config.yaml: {err}") from err
    checkpoint = checkpoint_dir / LAST_CHECKPOINT
    if not checkpoint.exists():
        raise StoreError(f"the run has no checkpoint {str(checkpoint)!r}.")
    state = load_checkpoint(checkpoint)
    task.load_state_dict(state["state_dict"])
    if hasattr(task, "on_load_checkpoint"):
        task.on_load_checkpoint(state)
    task.eval()
    return task
