"""`DivergenceGuard`: stop training at the step where the loss or a gradient stops being finite or explodes.

Without it a NaN loss is stepped on (the weights become NaN and a later solve blames its step
size), and a learning rate of 1e6 trains to a loss of 1e11 and stores a complete run. The guard
checks the loss before `backward` (and after the step for tasks that step through Pyro), every
gradient before the optimizer step, and raises `DivergenceError` naming the epoch, the step and
the last finite loss; the CLI marks the run failed and keeps its last periodic checkpoint, which
was written before the divergence.
"""

from __future__ import annotations

import math
import re
import traceback
from typing import Any

import lightning as L
import torch

from nde_lab.errors import NdeLabError

__all__ = ["DivergenceError", "DivergenceGuard", "translate_library_error"]


class DivergenceError(NdeLabError, RuntimeError):
    """Training diverged: the message names the epoch, the step, the offending value and the last finite loss."""


def _loss_of(outputs: Any) -> torch.Tensor | None:
    if isinstance(outputs, dict):
        outputs = outputs.get("loss")
    return outputs if isinstance(outputs, torch.Tensor) and outputs.numel() == 1 else None


class DivergenceGuard(L.Callback):
    """Raise `DivergenceError` on a non-finite loss or gradient, or a loss above
    `best + explode_factor * max(|best|, 1e-6)` (`explode_factor=None` turns that test off).

    `best` and the last finite loss are part of the checkpoint, so a resumed run guards identically.
    """

    def __init__(self, explode_factor: float | None = 1e4) -> None:
        if explode_factor is not None and not explode_factor > 0:
            raise ValueError(f"divergence_factor must be > 0 (or null to disable), got {explode_factor}.")
        self.explode_factor = explode_factor
        self.best = math.inf
        self.last_finite: float | None = None
        self._checked_step: tuple[int, int] | None = None

    def _where(self, trainer: L.Trainer) -> str:
        return f"epoch {trainer.current_epoch}, step {trainer.global_step}"

    def _last(self) -> str:
        return "none yet" if self.last_finite is None else f"{self.last_finite:.6g}"

    def check_loss(self, trainer: L.Trainer, loss: torch.Tensor) -> None:
        value = float(loss.detach())
        hint = "lower the learning rate, clip gradients (--trainer.gradient_clip_val), or check the data's scale"
        if not math.isfinite(value):
            raise DivergenceError(
                f"training diverged at {self._where(trainer)}: the loss is {value} (last finite loss "
                f"{self._last()}); stopped before stepping on it. {hint}."
            )
        if self.explode_factor is not None and math.isfinite(self.best):
            limit = self.best + self.explode_factor * max(abs(self.best), 1e-6)
            if value > limit:
                raise DivergenceError(
                    f"training diverged at {self._where(trainer)}: the loss {value:.6g} exceeds the best loss "
                    f"{self.best:.6g} by more than divergence_factor={self.explode_factor:g} times its size "
                    f"(last finite loss {self._last()}). {hint}, or raise --divergence_factor."
                )
        self.best = min(self.best, value)
        self.last_finite = value

    # ---- Lightning hooks ----------------------------------------------------------------------------
    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        # Only the first loss of each optimizer step: closures (L-BFGS line searches) evaluate trial
        # points whose losses may legitimately be huge; the step's own gradients are checked below.
        step = (trainer.current_epoch, trainer.global_step)
        if trainer.training and step != self._checked_step:
            self.check_loss(trainer, loss)
            self._checked_step = step

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        bad = [name for name, p in pl_module.named_parameters()
               if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        if bad:
            raise DivergenceError(
                f"training diverged at {self._where(trainer)}: non-finite gradient of {', '.join(bad[:5])}"
                f"{' ...' if len(bad) > 5 else ''} (last finite loss {self._last()}); stopped before the step."
            )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = _loss_of(outputs)
        checked = self._checked_step is not None and self._checked_step[0] == trainer.current_epoch and \
            self._checked_step[1] >= trainer.global_step - 1
        if loss is not None and not checked:  # tasks that step without Lightning's backward
            self.check_loss(trainer, loss)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "last_finite": self.last_finite}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict.get("best", math.inf))
        self.last_finite = state_dict.get("last_finite")


_CONSTRAINT = re.compile(r"Expected parameter (\w+) .*?of distribution (\w+).*?to satisfy the constraint (.+?), but found", re.S)
_SUPPORT = re.compile(r"Expected value argument \(Tensor of shape \(([^)]*)\)\) to be within the support \((.+?)\) of the "
                      r"distribution (\w+)", re.S)
_SITE = re.compile(r"at site '([^']+)'")


def translate_library_error(err: BaseException) -> NdeLabError | None:
    """The lab's error for a bare library failure that hides the cause, else None.

    - an `AssertionError` raised inside Pyro's transforms (splines, autoregressive flows) -> names the
      transform, file and line: it almost always means non-finite inputs after training diverged;
    - torch distribution constraint `ValueError`s -> names the parameter, the distribution, the Pyro
      site when known, and the constraint.
    """
    if isinstance(err, NdeLabError):
        return None
    if isinstance(err, AssertionError):
        frames = traceback.extract_tb(err.__traceback__)
        inside = [f for f in frames if "/pyro/" in f.filename.replace("\\", "/")]
        if inside:
            frame = inside[-1]
            module = frame.filename.replace("\\", "/").split("/pyro/")[-1]
            return DivergenceError(
                f"a Pyro transform rejected its input (assertion in pyro/{module}:{frame.lineno}, {frame.name}): "
                "its inputs or parameters are non-finite or out of range, usually because training diverged; "
                "lower the learning rate or clip gradients."
            )
        return None
    if isinstance(err, ValueError):
        text = str(err)
        found = _CONSTRAINT.search(text)
        if found:
            site = _SITE.search(text)
            where = f" at Pyro site {site.group(1)!r}" if site else ""
            return DivergenceError(
                f"parameter {found.group(1)!r} of the {found.group(2)} distribution{where} left its constraint "
                f"{found.group(3).strip()} (non-finite or out-of-range values), usually because training diverged."
            )
        found = _SUPPORT.search(text)
        if found:
            site = _SITE.search(text)
            where = f" at Pyro site {site.group(1)!r}" if site else ""
            return DivergenceError(
                f"values of shape ({found.group(1)}) given to the {found.group(3)} distribution{where} are outside "
                f"its support {found.group(2).strip()} (non-finite or out of range), usually because training "
                "diverged or the data do not match the model."
            )
    return None
