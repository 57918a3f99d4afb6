"""`VectorField`: the interface of every ODE right-hand side f(t, y) in the lab."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

__all__ = ["VectorField"]


class VectorField(nn.Module, ABC):
    """dy/dt = f(t, y) on a state of `dim` observed coordinates plus `augment_dim` latent ones.

    Augmented neural ODEs (Dupont et al. 2019) solve in dimension dim + augment_dim from
    y0 padded with zeros and read back the first `dim` coordinates: `augment` and `project` do that.
    """

    dim: int
    augment_dim: int = 0

    @abstractmethod
    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """Evaluate f at time `t` (scalar tensor) and state `y` of shape (*batch, dim + augment_dim)."""

    @property
    def state_dim(self) -> int:
        return self.dim + self.augment_dim

    def augment(self, y: Tensor) -> Tensor:
        """(*batch, dim) -> (*batch, dim + augment_dim), the extra coordinates zero."""
        if self.augment_dim == 0:
            return y
        return torch.cat([y, y.new_zeros(*y.shape[:-1], self.augment_dim)], dim=-1)

    def project(self, y: Tensor) -> Tensor:
        """(..., dim + augment_dim) -> (..., dim): the observed coordinates."""
        return y[..., : self.dim] if self.augment_dim else y
