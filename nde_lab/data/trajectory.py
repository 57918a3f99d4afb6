"""`TrajectoryDataModule`: random sub-windows of one series for training, the whole series for validation."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler

from nde_lab.data.resumable import ResumableGenerators
from nde_lab.data.series import Series
from nde_lab.data.sources import SeriesSource
from nde_lab.errors import DataError

__all__ = ["TrajectoryDataModule"]


class _Windows(Dataset):
    """Item i: the window of `length` observations starting at observation i -> (times (L,), values (L, D))."""

    def __init__(self, times: Tensor, values: Tensor, length: int) -> None:
        self.times, self.values, self.length = times, values, length

    def __len__(self) -> int:
        return self.times.shape[0] - self.length + 1

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.times[i : i + self.length], self.values[i : i + self.length]


class _Whole(Dataset):
    def __init__(self, times: Tensor, values: Tensor) -> None:
        self.times, self.values = times, values

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.times, self.values


class _WindowDraws(Sampler[int]):
    """Seeded window draws with replacement (a RandomSampler's stream). Not a RandomSampler itself, so
    under DDP Lightning splits these draws across ranks (DistributedSamplerWrapper) instead of
    replacing them by a pass over every window: `batches_per_epoch` stays the epoch's total."""

    def __init__(self, inner: RandomSampler) -> None:
        self.inner = inner

    def __iter__(self):
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)


class TrajectoryDataModule(ResumableGenerators, L.LightningDataModule):
    """Trains on random sub-windows of one observed series (the classic spiral demo), validates on all of it.

    Batches are (times (B, L), values (B, L, D)) in the series' units; the task standardises.

    Args:
        source: where the series comes from (`Spiral`, `HareLynx`, `SeriesFile`).
        window_length: observations per training window L (>= 2; capped at the series length).
        windows_per_batch: windows per batch B.
        batches_per_epoch: training batches per epoch, in total: with N DDP processes each rank runs
            batches_per_epoch / N of them (an epoch is the same data, split across ranks).
        seed: seed of the window sampler, seeded once (windows are reproducible for a given seed, and
            the sampler's state is part of every checkpoint, so a resumed fit draws the same windows).
    """

    def __init__(
        self,
        source: SeriesSource,
        window_length: int = 10,
        windows_per_batch: int = 20,
        batches_per_epoch: int = 50,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if window_length < 2 or windows_per_batch < 1 or batches_per_epoch < 1:
            raise DataError(
                "data: window_length must be >= 2, windows_per_batch and batches_per_epoch >= 1; got "
                f"{window_length}, {windows_per_batch}, {batches_per_epoch}."
            )
        self.source = source
        self.series: Series = source.load()  # load now: a bad file fails before any run is created
        self.window_length = min(window_length, self.series.times.shape[0])
        self.windows_per_batch = windows_per_batch
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        dtype = torch.get_default_dtype()
        self.times = torch.as_tensor(self.series.times, dtype=dtype)
        self.values = torch.as_tensor(self.series.values, dtype=dtype)

    @property
    def state_names(self) -> list[str]:
        return self.series.state_names

    def train_dataloader(self) -> DataLoader:
        windows = _Windows(self.times, self.values, self.window_length)
        sampler = RandomSampler(
            windows, replacement=True, num_samples=self.windows_per_batch * self.batches_per_epoch,
            generator=self.data_generator("train"),
        )
        return DataLoader(windows, batch_size=self.windows_per_batch, sampler=_WindowDraws(sampler))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Whole(self.times, self.values), batch_size=1)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def standardisation(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-state mean and standard deviation of the series, shape (D,) each (std floored at 1e-8)."""
        values = self.series.values
        return values.mean(axis=0), np.maximum(values.std(axis=0), 1e-8)
