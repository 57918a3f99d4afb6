"""`MetricsRecorder`: keeps every logged metric per epoch so the run stores its training curves."""

from __future__ import annotations

import math
import time

import lightning as L
import numpy as np
import xarray as xr

__all__ = ["MetricsRecorder"]


class MetricsRecorder(L.Callback):
    """Records `trainer.callback_metrics` at each epoch end (after validation) and at evaluation ends."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._open_epoch = False
        self._start = time.perf_counter()

    @staticmethod
    def _metrics(trainer: L.Trainer) -> dict[str, float]:
        """The logged scalars; with several processes (DDP), their mean over ranks, so the run
        rank zero writes holds the same numbers whatever the world size (every rank calls this at
        the same hooks with the same metric names)."""
        values = {}
        for name, value in sorted(trainer.callback_metrics.items()):
            try:
                values[name] = float(value)
            except (TypeError, ValueError):
                continue
        if trainer.world_size > 1 and values:
            import torch

            reduced = trainer.strategy.reduce(torch.tensor(list(values.values()), dtype=torch.float64), reduce_op="mean")
            values = dict(zip(values, reduced.tolist(), strict=True))
        return values

    def _record(self, trainer: L.Trainer) -> None:
        row = {"epoch": float(trainer.current_epoch), "step": float(trainer.global_step),
               "wall_time": time.perf_counter() - self._start}
        row.update(self._metrics(trainer))
        self.rows.append(row)

    def _refresh_last(self, trainer: L.Trainer) -> None:
        """Add what the module logged in its own `on_train_epoch_end`, which Lightning calls after
        this callback's, to the epoch's row."""
        self.refresh(trainer)
        self._open_epoch = False

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer)
        self._open_epoch = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._refresh_last(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._refresh_last(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate" and not trainer.sanity_checking:
            self._record(trainer)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer)

    def state_dict(self) -> dict[str, list[dict[str, float]]]:
        """The rows so far: part of every checkpoint, so a resumed run keeps the history of its parent."""
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state_dict: dict[str, list[dict[str, float]]]) -> None:
        self.rows = [dict(row) for row in state_dict.get("rows", [])]
        self._open_epoch = False

    def refresh(self, trainer: L.Trainer) -> None:
        """Add values the module logged in its own `on_train_epoch_end` to the epoch's row (before a checkpoint)."""
        if self.rows and self._open_epoch:
            self.rows[-1].update(self._metrics(trainer))

    def dataset(self) -> xr.Dataset:
        """Metrics along `epoch` (one entry per record); NaN where a metric was not logged."""
        names = sorted({k for row in self.rows for k in row} - {"epoch"})
        index = np.arange(len(self.rows))
        data = {
            name: ("epoch", np.array([row.get(name, math.nan) for row in self.rows], dtype=np.float64))
            for name in names
        }
        epochs = np.array([row["epoch"] for row in self.rows], dtype=np.int64)
        ds = xr.Dataset(data, coords={"epoch": ("epoch", epochs if len(set(epochs)) == len(epochs) else index)})
        if "wall_time" in ds:
            ds["wall_time"].attrs["units"] = "s"
        ds.attrs["description"] = "metrics logged by the task, recorded at the end of each epoch"
        return ds
