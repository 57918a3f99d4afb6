"""Fast SDE sampling: `solve_sde` (fixed step, `GridBrownian`) against a hand-written Euler-Maruyama loop."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torchsde
from torch import Tensor, nn

from nde_lab.solvers.sde import SDESolverOptions, solve_sde

__all__ = ["run"]

BATCH, DIM, WIDTH, DT, T_END, N_OUT = 1024, 2, 32, 0.01, 1.0, 11


class _MLPSDE(nn.Module):
    """Diagonal-noise Ito SDE with small MLP drift and diffusion (the issue's benchmark case)."""

    noise_type, sde_type = "diagonal", "ito"

    def __init__(self) -> None:
        super().__init__()
        self.drift = nn.Sequential(nn.Linear(DIM, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH), nn.Tanh(), nn.Linear(WIDTH, DIM))
        self.diffusion = nn.Sequential(nn.Linear(DIM, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH), nn.Tanh(),
                                       nn.Linear(WIDTH, DIM), nn.Sigmoid())

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        return self.drift(y)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return self.diffusion(y)


def _hand_loop(sde: _MLPSDE, y0: Tensor, seed: int) -> Tensor:
    """The reference: Euler-Maruyama with one seeded `randn` per step, states kept at the output times."""
    gen = torch.Generator().manual_seed(seed)
    n_steps = round(T_END / DT)
    every = n_steps // (N_OUT - 1)
    y, out = y0, [y0]
    sqrt_dt = DT**0.5
    for k in range(n_steps):
        t = torch.tensor(k * DT)
        y = y + sde.f(t, y) * DT + sde.g(t, y) * torch.randn(y.shape, generator=gen) * sqrt_dt
        if (k + 1) % every == 0:
            out.append(y)
    return torch.stack(out)


def _best_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def run(repeats: int = 5) -> list[dict]:
    """Rows {case, lab_ms, reference_ms, ratio, notes}; the target is ratio <= 2 for the fast path."""
    torch.manual_seed(0)
    sde = _MLPSDE()
    y0, t = torch.zeros(BATCH, DIM), torch.linspace(0.0, T_END, N_OUT)
    fast = SDESolverOptions(method="euler", dt=DT)
    with torch.no_grad():
        reference = _best_ms(lambda: _hand_loop(sde, y0, 0), repeats)
        lab = _best_ms(lambda: solve_sde(sde, y0, t, options=fast, seed=0), repeats)
        # torchsde's default: sdeint builds a BrownianInterval (Brownian-bridge tree) for every solve
        interval = _best_ms(lambda: torchsde.sdeint(sde, y0, t, method="euler", dt=DT), max(1, repeats // 2))
    case = f"sde_sample_euler_{BATCH}x{DIM}_mlp{WIDTH}_{round(T_END / DT)}steps"
    return [
        {"case": case, "lab_ms": lab, "reference_ms": reference, "ratio": lab / reference,
         "notes": "solve_sde fixed step (GridBrownian, seeded) vs hand-written Euler-Maruyama loop; target ratio <= 2"},
        {"case": case + "_torchsde_default", "lab_ms": interval, "reference_ms": reference, "ratio": interval / reference,
         "notes": "for context: torchsde.sdeint with its default BrownianInterval (float32 times), the path the fast sampler replaces"},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
