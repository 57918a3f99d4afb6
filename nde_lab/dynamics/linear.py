"""`LinearVectorField`: f(t, y) = A y + b, the closed-form reference field."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nde_lab.dynamics.base import VectorField

__all__ = ["LinearVectorField"]


class LinearVectorField(VectorField):
    """dy/dt = A y + b with a learnable (D, D) matrix A and optional bias b.

    Args:
        dim: state dimension D.
        bias: learn an offset b (else b = 0).
        matrix: initial A as nested lists (D x D); default small random.
        trainable: whether A and b are parameters that train.
    """

    def __init__(
        self,
        dim: int,
        *,
        bias: bool = False,
        matrix: list[list[float]] | None = None,
        trainable: bool = True,
    ) -> None:
        super().__init__()
        self.dim = dim
        if matrix is None:
            a = 0.1 * torch.randn(dim, dim)
        else:
            a = torch.as_tensor(matrix, dtype=torch.get_default_dtype())
            if a.shape != (dim, dim):
                raise ValueError(f"LinearVectorField matrix must have shape ({dim}, {dim}), got {tuple(a.shape)}.")
        self.A = nn.Parameter(a, requires_grad=trainable)
        self.b = nn.Parameter(torch.zeros(dim), requires_grad=trainable) if bias else None

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        out = y @ self.A.T
        return out + self.b if self.b is not None else out
