"""Neural ODE training step as a user pays for it: the lab (Lightning task + solver seam) against a hand-written
torchdiffeq loop.

Both sides are timed batch start to batch start, so the lab's time includes everything Lightning does
between steps (logging, callbacks, the data loader) and the reference's includes its loader; runs
alternate (lab, reference, lab, ...) so machine load hits both; the ratio is reported as the median
over rounds with its min-max spread.
"""

from __future__ import annotations

import statistics
import time

import lightning as L
import torch
from torch import nn
from torchdiffeq import odeint

from nde_lab.data import Spiral, TrajectoryDataModule
from nde_lab.dynamics import MLPVectorField
from nde_lab.solvers import ODESolverOptions
from nde_lab.train import NeuralODETask

STEPS, WARMUP = 300, 30
WINDOW, BATCH = 10, 20
STEP_SIZE, LR = 0.025, 0.01


class _StepTimer(L.Callback):
    """Seconds from one training batch's start to the next one's (the framework's work in between included)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._t is not None:
            self.times.append(now - self._t)
        self._t = now


def _lab_step_seconds() -> float:
    torch.manual_seed(0)
    data = TrajectoryDataModule(Spiral(), window_length=WINDOW, windows_per_batch=BATCH, batches_per_epoch=STEPS)
    field = MLPVectorField(2, width=50, depth=1, input_map="cube")
    task = NeuralODETask(field, ODESolverOptions(method="rk4", step_size=STEP_SIZE), loss="l1",
                         optimizer=lambda p: torch.optim.Adam(p, lr=LR))
    timer = _StepTimer()
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[timer], accelerator="cpu")
    trainer.fit(task, data)
    return statistics.median(timer.times[WARMUP:])


class _Reference(nn.Module):
    """The same MLP as `MLPVectorField(2, width=50, depth=1, input_map='cube')`, written by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 50), nn.Tanh(), nn.Linear(50, 2))

    def forward(self, t, y):
        return self.net(y**3)


def _reference_step_seconds() -> float:
    torch.manual_seed(0)
    data = TrajectoryDataModule(Spiral(), window_length=WINDOW, windows_per_batch=BATCH, batches_per_epoch=STEPS)
    loc, scale = (torch.as_tensor(a, dtype=torch.float32) for a in data.standardisation())
    func = _Reference()
    optimizer = torch.optim.Adam(func.parameters(), lr=LR)
    times, last = [], None
    for batch_t, batch_y in data.train_dataloader():
        start = time.perf_counter()  # batch start to batch start, the loader's work included
        if last is not None:
            times.append(start - last)
        last = start
        z = (batch_y - loc) / scale
        t = batch_t[0] - batch_t[0, 0]
        pred = odeint(func, z[:, 0], t, method="rk4", options={"step_size": STEP_SIZE}).movedim(0, 1)
        loss = (pred - z).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return statistics.median(times[WARMUP:])


def run(rounds: int = 3) -> list[dict]:
    """Median seconds per training step after warm-up, lab vs hand-written, alternating, same model/data/solver."""
    torch.set_num_threads(1)
    lab, reference = [], []
    for _ in range(rounds):
        lab.append(_lab_step_seconds())
        reference.append(_reference_step_seconds())
    ratios = [a / b for a, b in zip(lab, reference, strict=True)]
    return [{
        "case": f"neural ODE training step (spiral, {BATCH} windows x {WINDOW} points, rk4 h={STEP_SIZE}, MLP 2-50-2)",
        "lab_ms": 1e3 * statistics.median(lab), "reference_ms": 1e3 * statistics.median(reference),
        "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios), "target": "<= 1.05",
        "notes": f"median step of {STEPS - WARMUP} steps per round, batch start to batch start, {rounds} alternating rounds",
    }]


if __name__ == "__main__":
    for row in run():
        print(row)
