"""scikit-learn's bundled 8x8 digits (1797 images) as a DataModule; needs the optional extra `digits`."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from nde_lab.data.resumable import ResumableGenerators
from nde_lab.errors import DataError

__all__ = ["DigitsDataModule", "load_digits_array"]

PIXELS = 64
MAX_INTENSITY = 16


def load_digits_array() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 64) of integer intensities 0..16, labels (1797,)) from scikit-learn's bundled copy."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DataError(
            "the digits data ships with scikit-learn, which is not installed; install the optional extra "
            "with `pip install 'nde-lab[digits]'` (or `pip install scikit-learn`)."
        ) from err
    bunch = load_digits()
    return bunch.data.astype(np.int64), bunch.target.astype(np.int64)


class DigitsDataModule(ResumableGenerators, L.LightningDataModule):
    """8x8 digits as flat vectors of 64 pixels, split once (seeded) into train and held-out images.

    Args:
        binarize: pixels -> {0, 1} by `pixel >= threshold` (for a Bernoulli likelihood); else the
            integer intensities 0..16 (for a binomial likelihood).
        threshold: binarisation threshold on the 0..16 scale.
        val_fraction: fraction of images held out.
        batch_size: images per batch.
        seed: seeds the split and the shuffling.
    """

    dim = PIXELS
    image_shape = (8, 8)

    def __init__(self, *, binarize: bool = True, threshold: int = 8, val_fraction: float = 0.2,
                 batch_size: int = 128, seed: int = 0) -> None:
        super().__init__()
        if not 0 < val_fraction < 1:
            raise DataError(f"DigitsDataModule.val_fraction must lie in (0, 1), got {val_fraction}.")
        if batch_size < 1:
            raise DataError(f"DigitsDataModule.batch_size must be >= 1, got {batch_size}.")
        images, labels = load_digits_array()
        values = (images >= threshold).astype(np.float64) if binarize else images.astype(np.float64)
        order = np.random.default_rng(seed).permutation(len(images))
        n_val = round(val_fraction * len(images))
        val_idx, train_idx = order[:n_val], order[n_val:]
        dtype = torch.get_default_dtype()
        self.binarize, self.batch_size, self.seed = binarize, batch_size, seed
        self.train_x = torch.as_tensor(values[train_idx], dtype=dtype)
        self.val_x = torch.as_tensor(values[val_idx], dtype=dtype)
        self.train_labels = torch.as_tensor(labels[train_idx])
        self.val_labels = torch.as_tensor(labels[val_idx])

    def train_dataloader(self) -> DataLoader:
        gen = self.data_generator("train")
        return DataLoader(TensorDataset(self.train_x), batch_size=self.batch_size, shuffle=True, generator=gen)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.val_x), batch_size=len(self.val_x))
