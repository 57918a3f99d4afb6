"""Exact resume: periodic checkpoints inside the run that carry every random state.

`RngState` puts the states of torch's, numpy's and Python's global generators into each checkpoint
and restores them when Lightning restores callbacks (before the first resumed batch; Lightning runs
the sanity check under `isolate_rng`). DataModules keep their own data generators in their
`state_dict` (`nde_lab.data.resumable`), which Lightning also saves, and `MetricsRecorder` keeps the
metric rows, so a resumed fit replays nothing and continues bit for bit on CPU.

`LabCheckpoint` is the default `ModelCheckpoint`: `last.ckpt` at the end of every training epoch and
`best.ckpt` for the monitored metric (the EarlyStopping metric when there is one, else `train_loss`
when the task logs it).
"""

from __future__ import annotations

import random
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

__all__ = ["LabCheckpoint", "RngState", "collect_rng_states", "set_rng_states"]


def collect_rng_states() -> dict[str, Any]:
    """torch, numpy and Python generator states as tensors and plain values (weights-only loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of `collect_rng_states`."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = states["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))


class RngState(L.Callback):
    """Saves the global random states in every checkpoint and restores them on resume."""

    def state_dict(self) -> dict[str, Any]:
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict:
            set_rng_states(state_dict)


class LabCheckpoint(ModelCheckpoint):
    """`last.ckpt` every training epoch, and `best.ckpt` for `monitor` once the task logs it."""

    def __init__(self, dirpath: str, monitor: str | None = "train_loss", mode: str = "min",
                 before_save: Any = None) -> None:
        super().__init__(dirpath=dirpath, filename="best", monitor=monitor, mode=mode, save_top_k=1 if monitor else 0,
                         save_last=True, every_n_epochs=1, save_on_train_epoch_end=True,
                         auto_insert_metric_name=False, enable_version_counter=False)
        self.before_save = before_save

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.before_save is not None:
            self.before_save(trainer)
        super().on_train_epoch_end(trainer, pl_module)

    def _save_topk_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        if self.monitor is not None and self.monitor not in monitor_candidates:
            return  # the task does not log this metric: keep `last.ckpt` only
        super()._save_topk_checkpoint(trainer, monitor_candidates)
