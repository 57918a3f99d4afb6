"""2-D toy densities (FFJORD's generators) and a DataModule drawing fresh samples every epoch."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from nde_lab.errors import DataError
from nde_lab.solvers.registry import check_choice

__all__ = [
    "TOY2D",
    "TOY2D_CLASSES",
    "Toy2DDataModule",
    "Toy2DName",
    "toy2d_log_density",
    "toy2d_sample",
    "toy2d_sample_labelled",
]

Toy2DName = Literal[
    "eight_gaussians", "checkerboard", "two_moons", "pinwheel", "circles", "two_spirals", "gaussian_mixture",
]


Labelled = tuple[np.ndarray, np.ndarray]  # points (n, 2) and integer labels (n,)


def _eight_gaussians(rng: np.random.Generator, n: int) -> Labelled:
    centers = _EIGHT_CENTERS * 4.0
    idx = rng.integers(0, 8, n)
    return (rng.standard_normal((n, 2)) * 0.5 + centers[idx]) / 1.414, idx


_EIGHT_CENTERS = np.array(
    [(1, 0), (-1, 0), (0, 1), (0, -1)]
    + [(s1 / math.sqrt(2), s2 / math.sqrt(2)) for s1, s2 in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
)


def _checkerboard(rng: np.random.Generator, n: int) -> Labelled:
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2 + np.floor(x1) % 2
    square = (np.floor(x1) + 2) * 2 + np.floor((np.floor(x2) + 2) / 2)  # which of the 8 squares
    return np.stack([x1, x2], axis=1) * 2, square.astype(np.int64)


def _two_moons(rng: np.random.Generator, n: int) -> Labelled:
    n_out = n // 2
    t = rng.random(n) * math.pi
    outer = np.arange(n) < n_out
    x = np.where(outer, np.cos(t), 1 - np.cos(t))
    y = np.where(outer, np.sin(t), 1 - np.sin(t) - 0.5)
    pts = np.stack([x, y], axis=1) + rng.standard_normal((n, 2)) * 0.1
    order = rng.permutation(n)
    return (pts * 2 + np.array([-1.0, -0.2]))[order], (~outer).astype(np.int64)[order]


def _pinwheel(rng: np.random.Generator, n: int) -> Labelled:
    classes, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25
    rads = np.linspace(0, 2 * np.pi, classes, endpoint=False)
    features = rng.standard_normal((n, 2)) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = rng.integers(0, classes, n)
    angles = rads[labels] + rate * np.exp(features[:, 0])
    rot = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)], axis=1).reshape(-1, 2, 2)
    return 2 * np.einsum("ti,tij->tj", features, rot), labels


def _circles(rng: np.random.Generator, n: int) -> Labelled:
    t = rng.random(n) * 2 * math.pi
    inner = np.arange(n) >= n // 2
    radius = np.where(inner, 0.5, 1.0)
    pts = np.stack([np.cos(t), np.sin(t)], axis=1) * radius[:, None] + rng.standard_normal((n, 2)) * 0.08
    order = rng.permutation(n)
    return (pts * 3)[order], inner.astype(np.int64)[order]


def _two_spirals(rng: np.random.Generator, n: int) -> Labelled:
    m = np.sqrt(rng.random((n, 1))) * 540 * (2 * np.pi) / 360
    sign = np.where(rng.random((n, 1)) < 0.5, 1.0, -1.0)
    d = np.hstack([-np.cos(m) * m + rng.random((n, 1)) * 0.5, np.sin(m) * m + rng.random((n, 1)) * 0.5])
    return sign * d / 3 + rng.standard_normal((n, 2)) * 0.1, (sign[:, 0] < 0).astype(np.int64)


#: the known mixture used for accuracy checks: two isotropic Gaussians, weights 0.5
_GM_MEANS = np.array([[-1.0, 0.0], [1.0, 0.0]])
_GM_STD = 0.5


def _gaussian_mixture(rng: np.random.Generator, n: int) -> Labelled:
    idx = rng.integers(0, len(_GM_MEANS), n)
    return _GM_MEANS[idx] + rng.standard_normal((n, 2)) * _GM_STD, idx


#: generator name -> (rng, n) -> (points (n, 2), labels (n,)); a label is the mixture component,
#: moon, circle, arm or square a point was drawn from
TOY2D: dict[str, Callable[[np.random.Generator, int], Labelled]] = {
    "eight_gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "two_moons": _two_moons,
    "pinwheel": _pinwheel,
    "circles": _circles,
    "two_spirals": _two_spirals,
    "gaussian_mixture": _gaussian_mixture,
}


#: number of distinct labels of each generator (the context size of a label-conditioned flow)
TOY2D_CLASSES: dict[str, int] = {
    "eight_gaussians": 8, "checkerboard": 8, "two_moons": 2, "pinwheel": 5, "circles": 2, "two_spirals": 2,
    "gaussian_mixture": 2,
}


def toy2d_sample_labelled(name: str, n: int, *, seed: int | np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points (n, 2) of the named toy density and the label (n,) of the part each was drawn from."""
    check_choice("toy2d name", name, TOY2D, error=DataError)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return TOY2D[name](rng, n)


def toy2d_sample(name: str, n: int, *, seed: int | np.random.Generator) -> np.ndarray:
    """n points (n, 2) of the named toy density, from `seed` (an int or a numpy Generator)."""
    return toy2d_sample_labelled(name, n, seed=seed)[0]


def _mixture_log_density(x: np.ndarray, means: np.ndarray, std: float) -> np.ndarray:
    sq = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    comp = -0.5 * sq / std**2 - 2 * math.log(std) - math.log(2 * math.pi)
    top = comp.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(comp - top).mean(axis=1, keepdims=True)))[:, 0]


def toy2d_log_density(name: str, x: np.ndarray) -> np.ndarray:
    """The true log-density (nats) at x (n, 2), for the toys whose density is known in closed form.

    Known: "eight_gaussians", "gaussian_mixture" (mixtures) and "checkerboard" (uniform on 8 squares
    of area 4, so log(1/32) inside). Others raise `DataError`.
    """
    x = np.asarray(x, dtype=float)
    if name == "eight_gaussians":
        return _mixture_log_density(x, _EIGHT_CENTERS * 4.0 / 1.414, 0.5 / 1.414)
    if name == "gaussian_mixture":
        return _mixture_log_density(x, _GM_MEANS, _GM_STD)
    if name == "checkerboard":
        u = x / 2
        inside = (np.abs(u[:, 0]) < 2) & (np.abs(u[:, 1]) < 2)
        on = (np.floor(u[:, 0]) + np.floor(u[:, 1])) % 2 == 0
        return np.where(inside & on, -math.log(32.0), -np.inf)
    raise DataError(
        f"toy2d_log_density: the density of {name!r} has no closed form here; known: "
        "'eight_gaussians', 'gaussian_mixture', 'checkerboard'."
    )


def _one_hot(labels: np.ndarray, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(labels), classes).to(torch.get_default_dtype())


class _FreshSamples(IterableDataset):
    """Each pass (epoch) yields `n // batch_size` batches drawn anew from rng([seed, epoch]).

    A batch is the points (b, 2), or (points, one-hot labels (b, C)) when `labelled`.
    """

    def __init__(self, name: str, n: int, batch_size: int, seed: int, labelled: bool = False) -> None:
        self.name, self.n, self.batch_size, self.seed, self.labelled = name, n, batch_size, seed, labelled
        self.epoch = 0

    def __len__(self) -> int:
        return max(1, self.n // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for _ in range(len(self)):
            x, labels = TOY2D[self.name](rng, self.batch_size)
            x = torch.as_tensor(x, dtype=torch.get_default_dtype())
            yield (x, _one_hot(labels, TOY2D_CLASSES[self.name])) if self.labelled else x


class Toy2DDataModule(L.LightningDataModule):
    """A 2-D toy density: fresh training samples every epoch, a fixed held-out set.

    Args:
        name: the generator (eight_gaussians, checkerboard, two_moons, pinwheel, circles,
            two_spirals, gaussian_mixture).
        n_train: training points drawn per epoch.
        n_val: size of the fixed held-out set.
        batch_size: points per batch.
        seed: seeds every draw: epoch e's training points come from rng([seed, e]).
        extent: half-width of the square [-extent, extent]² on which a density grid is stored.
        context: "none", or "label": batches are (x, one-hot label of the component / moon / arm /
            square each point came from), for a flow with `context_dim = self.context_dim`.
    """

    dim = 2
    coord_names = ("x", "y")

    def __init__(
        self,
        name: Toy2DName = "eight_gaussians",
        *,
        n_train: int = 10_000,
        n_val: int = 2_000,
        batch_size: int = 256,
        seed: int = 0,
        extent: float = 4.5,
        context: Literal["none", "label"] = "none",
    ) -> None:
        super().__init__()
        check_choice("data.name", name, TOY2D, error=DataError)
        if n_train < 1 or n_val < 1 or batch_size < 1:
            raise DataError(
                f"Toy2DDataModule needs n_train, n_val, batch_size >= 1; got {n_train}, {n_val}, {batch_size}."
            )
        self.name, self.n_train, self.n_val, self.batch_size = name, n_train, n_val, batch_size
        if context not in ("none", "label"):
            raise DataError(f"data.context={context!r} is not valid; must be one of 'none', 'label'.")
        self.seed, self.extent, self.context = seed, float(extent), context
        #: size of the context vector of each batch (0: batches are plain points)
        self.context_dim = TOY2D_CLASSES[name] if context == "label" else 0
        self._train = _FreshSamples(name, n_train, min(batch_size, n_train), seed, labelled=context == "label")
        val_x, val_labels = toy2d_sample_labelled(name, n_val, seed=np.random.default_rng([seed, 2**31 - 1]))
        self.val_x = torch.as_tensor(val_x, dtype=torch.get_default_dtype())
        self.val_labels = torch.as_tensor(val_labels)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._train, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        tensors = [self.val_x] + ([_one_hot(self.val_labels.numpy(), self.context_dim)] if self.context_dim else [])
        return DataLoader(TensorDataset(*tensors), batch_size=max(self.batch_size, 1024))

    def state_dict(self) -> dict[str, int]:
        """The epoch counter of the training draws (epoch e draws from rng([seed, e])): kept in checkpoints."""
        return {"train_epoch": self._train.epoch}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._train.epoch = int(state_dict.get("train_epoch", self._train.epoch))

    def true_log_density(self, x: np.ndarray) -> np.ndarray:
        """The generator's true log-density at x (n, 2), where known (see `toy2d_log_density`)."""
        return toy2d_log_density(self.name, x)
