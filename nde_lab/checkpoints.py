"""The one way the lab reads a checkpoint: a local file (or one inside a run), weights only, named in every error.

Lightning downloads a URL given as `ckpt_path` and unpickles it with `weights_only=False`, caching the
download by file name; a checkpoint's hyper-parameters can name classes to import. The lab refuses
URLs, refuses missing, empty or damaged files with a `CheckpointError` naming the file (exit 2 before
a run is created), and reads every checkpoint with `torch.load(weights_only=True)`: tensors, numbers,
strings and containers only, no pickled code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from nde_lab.errors import NdeLabError

__all__ = ["CheckpointError", "check_checkpoint_path", "load_checkpoint"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


class CheckpointError(NdeLabError, ValueError):
    """A checkpoint cannot be used: the message names the file and what is wrong with it."""


def check_checkpoint_path(path: str | os.PathLike) -> Path:
    """`path` as a local, existing, non-empty file; a URL or anything else raises `CheckpointError`."""
    text = os.fspath(path)
    if _URL.match(text):
        raise CheckpointError(
            f"checkpoint {text!r} is a URL; nde-lab loads checkpoints only from local files or runs in the store "
            "(a remote checkpoint is a pickle that could run code). Download it, check where it comes from, "
            "and pass the local file, or use --from_run RUN."
        )
    file = Path(text).expanduser()
    if not file.exists():
        raise CheckpointError(f"checkpoint file {str(file)!r} does not exist.")
    if not file.is_file():
        raise CheckpointError(f"checkpoint {str(file)!r} is not a file.")
    if file.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file {str(file)!r} is empty (0 bytes); it was not written completely.")
    return file.resolve()


def load_checkpoint(path: str | os.PathLike, *, map_location: str = "cpu") -> dict[str, Any]:
    """Read a Lightning checkpoint with `torch.load(weights_only=True)` -> its dict (`state_dict`, ...).

    Raises `CheckpointError` naming the file when it is a URL, missing, empty, truncated, not a
    checkpoint, or holds pickled objects other than tensors and plain containers.
    """
    import pickle
    import zipfile

    import torch

    file = check_checkpoint_path(path)
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint file {str(file)!r} holds pickled objects that are not plain weights; refused "
            f"(nothing in it was run). torch says: {first[:300]}"
        ) from None
    except (EOFError, OSError, RuntimeError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f"checkpoint file {str(file)!r} is damaged or truncated ({type(err).__name__}: {str(err)[:200]}); "
            "use an earlier checkpoint or rerun."
        ) from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise CheckpointError(f"{str(file)!r} is not a Lightning checkpoint (no 'state_dict' entry).")
    return state
