"""Rebuild a stored run's task from its resolved config and its weights (torch weights-only loading)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nde_lab.errors import StoreError

__all__ = ["LAST_CHECKPOINT", "restore_task"]

LAST_CHECKPOINT = "last.ckpt"


def restore_task(config: dict[str, Any], checkpoint_dir: Path) -> Any:
    """Instantiate `config["model"]` (class_path + init_args) and load `checkpoint_dir/last.ckpt`.

    The checkpoint is read with `torch.load(..., weights_only=True)`: no pickled code runs.
    """
    from jsonargparse import ArgumentParser

    from nde_lab.train.base import LabTask

    if "model" not in config:
        raise StoreError("the run's config.yaml has no 'model' section; it was not written by nde-lab fit.")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LabTask, "model", required=True)
    try:
        parsed = parser.parse_object({"model": config["model"]})
        instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in 4.49
        task = instantiate(parsed).model
    except Exception as err:
        raise StoreError(f"cannot rebuild the model from config.yaml: {err}") from err
    checkpoint = checkpoint_dir / LAST_CHECKPOINT
    if not checkpoint.exists():
        raise StoreError(f"the run has no checkpoint {str(checkpoint)!r}.")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    task.load_state_dict(state["state_dict"])
    if hasattr(task, "on_load_checkpoint"):
        task.on_load_checkpoint(state)
    task.eval()
    return task
