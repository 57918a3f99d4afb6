"""What a fit shows while it runs: Lightning's rich (or tqdm) bar on a terminal, plain periodic lines
otherwise, nothing with `--quiet`; Lightning's banners and adverts silenced."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ProgressBar

__all__ = ["PlainProgressBar", "progress_trainer_kwargs", "silence_lightning"]

#: Lightning's info loggers: "GPU available", "Seed set", the litlogger/litmodels tips, "`Trainer.fit` stopped".
_CHATTY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


def silence_lightning() -> None:
    """Keep Lightning's warnings but drop its info banners and advert lines."""
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended.*")


def _eta(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class PlainProgressBar(ProgressBar):
    """One plain line (no control characters) at most every `interval` seconds and at the last epoch:
    epoch, step, elapsed time, ETA and the logged metrics. For logs, pipes and CI."""

    def __init__(self, interval: float = 10.0, stream: TextIO | None = None) -> None:
        super().__init__()
        self.interval = interval
        self.stream = stream
        self._enabled = True
        self._start = 0.0
        self._last = -float("inf")

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()
        self._last = self._start

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now = time.perf_counter()
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None
        done = trainer.current_epoch + 1
        last = max_epochs is not None and done >= max_epochs
        if not self._enabled or (now - self._last < self.interval and not last and done > 1):
            return
        self._last = now
        elapsed = now - self._start
        total = f"/{max_epochs}" if max_epochs else ""
        eta = f" eta {_eta(elapsed / done * (max_epochs - done))}" if max_epochs else ""
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        print(f"nde-lab: epoch {done}{total} step {trainer.global_step} elapsed {_eta(elapsed)}{eta} {shown}".rstrip(),
              file=self.stream or sys.stderr, flush=True)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress_trainer_kwargs(trainer_config: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    """Trainer keyword arguments for the progress display (to merge over the recipe's `trainer`).

    `--quiet` or a recipe's explicit `enable_progress_bar: false` show nothing; a progress bar callback
    the recipe already names is kept; otherwise Lightning's `RichProgressBar` (or `TQDMProgressBar`
    without rich) when stdout is a terminal, else `PlainProgressBar` lines on stderr.
    """
    if quiet or trainer_config.get("enable_progress_bar") is False:
        return {"enable_progress_bar": False}
    callbacks = list(trainer_config.get("callbacks") or [])
    if any(isinstance(c, ProgressBar) for c in callbacks):
        return {"enable_progress_bar": True}
    if _is_tty(sys.stdout):
        try:
            from lightning.pytorch.callbacks import RichProgressBar

            bar: ProgressBar = RichProgressBar(leave=True)
        except (ImportError, ModuleNotFoundError):
            from lightning.pytorch.callbacks import TQDMProgressBar

            bar = TQDMProgressBar()
    else:
        bar = PlainProgressBar()
    return {"enable_progress_bar": True, "callbacks": [*callbacks, bar]}
