"""User-written vector fields, imported by class_path from recipes in the CLI tests."""

from __future__ import annotations

import torch
from torch import Tensor

from nde_lab.dynamics import VectorField


class Exploding(VectorField):
    """dy/dt = rate * y**2: finite-time blow-up at t = 1 / (rate * y0) for positive y0."""

    def __init__(self, dim: int, rate: float = 50.0) -> None:
        super().__init__()
        self.dim = dim
        self.rate = torch.nn.Parameter(torch.tensor(rate))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.rate * y**2
