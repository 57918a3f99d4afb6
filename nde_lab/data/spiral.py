"""The synthetic spiral of Chen et al. (2018): dy/dt = (y**3) A, solved to high accuracy."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from nde_lab.data.series import Series
from nde_lab.solvers.ode import ODESolverOptions, solve_ode

__all__ = ["SPIRAL_MATRIX", "CubicSpiralField", "spiral_series"]

#: A of the demo in torchdiffeq's examples/ode_demo.py (row-vector convention: dy/dt = y**3 @ A).
SPIRAL_MATRIX = [[-0.1, 2.0], [-2.0, -0.1]]


class CubicSpiralField(nn.Module):
    """The true spiral field f(t, y) = (y**3) @ A for y of shape (*batch, 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("A", torch.tensor(SPIRAL_MATRIX, dtype=torch.float64))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return (y**3) @ self.A.to(y)


def spiral_series(
    *, n_points: int = 1000, t_end: float = 25.0, noise_std: float = 0.0, seed: int = 0
) -> Series:
    """Solve the spiral from y(0) = (2, 0) on `n_points` equally spaced times in [0, t_end].

    Solved in float64 with dopri8 at rtol 1e-10; optional Gaussian observation noise of standard
    deviation `noise_std` (seeded by `seed`).
    """
    t = torch.linspace(0.0, t_end, n_points, dtype=torch.float64)
    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
    options = ODESolverOptions(method="dopri8", rtol=1e-10, atol=1e-12, max_num_steps=100_000)
    with torch.no_grad():
        y = solve_ode(CubicSpiralField(), y0, t, options).y.numpy()
    if noise_std > 0:
        y = y + np.random.default_rng(seed).normal(0.0, noise_std, size=y.shape)
    return Series(
        times=t.numpy(), values=y, state_names=["y1", "y2"], time_units="1",
        source=f"spiral (Chen et al. 2018), n_points={n_points}, t_end={t_end}, noise_std={noise_std}, seed={seed}",
    )
