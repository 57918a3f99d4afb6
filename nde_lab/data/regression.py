"""`RegressionDataModule`: a small synthetic regression set (x, y) served full-batch or in minibatches."""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from nde_lab.solvers.registry import check_choice

__all__ = ["RegressionDataModule", "regression_data"]

TARGETS = ("sine", "teacher")


def regression_data(
    n: int, n_in: int, *, target: str = "sine", noise: float = 0.0, seed: int = 0, dtype: torch.dtype | None = None
) -> tuple[Tensor, Tensor]:
    """Inputs x on the sphere of radius sqrt(d) and targets y, shapes (n, d), (n, 1).

    "sine": y = sin(2 x_1) + 0.5 cos(x_2) (x_2 = 0 when d = 1); "teacher": a fixed random tanh
    network of width 16. Inputs lie on the sphere |x| = sqrt(d) so infinite-width kernels only
    see angles. `noise` adds N(0, noise^2) to y. Deterministic in `seed`.
    """
    check_choice("target", target, TARGETS, error=ValueError)
    gen = torch.Generator().manual_seed(seed)
    dtype = dtype or torch.get_default_dtype()
    x = torch.randn(n, n_in, generator=gen, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True) * n_in**0.5
    if target == "sine":
        second = x[:, 1] if n_in > 1 else torch.zeros(n, dtype=torch.float64)
        y = torch.sin(2 * x[:, 0]) + 0.5 * torch.cos(second)
    else:
        w1 = torch.randn(n_in, 16, generator=gen, dtype=torch.float64) / n_in**0.5
        w2 = torch.randn(16, generator=gen, dtype=torch.float64) / 4
        y = torch.tanh(x @ w1) @ w2 * 2
    y = y[:, None] + noise * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    return x.to(dtype), y.to(dtype)


class _FullBatch(Dataset):
    """The whole training set as every item (`n` items): full-batch gradient descent."""

    def __init__(self, x: Tensor, y: Tensor, n: int) -> None:
        self.x, self.y, self.n = x, y, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.x, self.y


class RegressionDataModule(L.LightningDataModule):
    """Synthetic regression data: `n_train` training and `n_test` test points (see `regression_data`).

    Args:
        n_train, n_test: number of points.
        n_in: input dimension d.
        target: "sine" or "teacher".
        noise: standard deviation of the target noise.
        batch_size: minibatch size; None serves the whole training set as one batch (full-batch
            gradient descent: one optimizer step per epoch).
        data_seed: seed of the data, independent of the network's seed (`seed_everything`), so a sweep
            over seeds (`nde-lab sweep --seeds N`, which moves every key named `seed`) keeps the data fixed.
        steps_per_epoch: full-batch mode only: the whole training set is served this many times per
            epoch (so one epoch is `steps_per_epoch` gradient-descent steps; saves per-epoch overhead).
    """

    def __init__(
        self,
        n_train: int = 64,
        n_test: int = 256,
        n_in: int = 2,
        *,
        target: Literal["sine", "teacher"] = "sine",
        noise: float = 0.0,
        batch_size: int | None = None,
        data_seed: int = 0,
        steps_per_epoch: int = 1,
    ) -> None:
        super().__init__()
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}.")
        self.steps_per_epoch = steps_per_epoch
        if n_train < 1 or n_test < 1 or n_in < 1 or noise < 0 or (batch_size is not None and batch_size < 1):
            raise ValueError(f"RegressionDataModule needs n_train, n_test, n_in, batch_size >= 1 and noise >= 0; got "
                             f"n_train={n_train}, n_test={n_test}, n_in={n_in}, batch_size={batch_size}, noise={noise}.")
        check_choice("target", target, TARGETS, error=ValueError)
        self.n_in, self.batch_size = n_in, batch_size
        x, y = regression_data(n_train + n_test, n_in, target=target, noise=noise, seed=data_seed, dtype=torch.float32)
        self.x_train, self.y_train = x[:n_train], y[:n_train]
        self.x_test, self.y_test = x[n_train:], y[n_train:]

    def train_tensors(self) -> tuple[Tensor, Tensor]:
        """The whole training set (x (n_train, d), y (n_train, 1)), for full-batch probes."""
        return self.x_train, self.y_train

    def probe_inputs(self, n: int) -> Tensor:
        """The first `n` training inputs, shape (n, d): where kernels and function distances are taken."""
        return self.x_train[:n]

    def train_dataloader(self) -> DataLoader:
        if self.batch_size is None:  # full-batch gradient descent, steps_per_epoch steps per epoch
            return DataLoader(_FullBatch(self.x_train, self.y_train, self.steps_per_epoch), batch_size=None)
        gen = torch.Generator().manual_seed(0)
        return DataLoader(TensorDataset(self.x_train, self.y_train), batch_size=self.batch_size, shuffle=True,
                          generator=gen)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x_test, self.y_test), batch_size=len(self.x_test))
