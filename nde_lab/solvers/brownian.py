"""`GridBrownian`: a seeded Brownian path on a fixed time grid, streamed chunk by chunk (fast fixed-step sampling)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torchsde import BrownianInterval
from torchsde._brownian import BaseBrownian

from nde_lab.errors import SolverError

__all__ = ["GridBrownian", "interval_brownian", "make_grid"]


def make_grid(t0: float, t1: float, dt: float) -> Tensor:
    """The fixed-step grid t0, t0 + dt, ..., t1 (float64, shape (n + 1,)); the last step may be shorter.

    The grid is the one torchsde's fixed-step loop walks (it steps by `dt` and clips the last step at
    `t1`), so every query the solver makes lands on a grid point.
    """
    if not (dt > 0 and math.isfinite(dt)):
        raise SolverError(f"the step dt must be a positive finite number, got {dt!r}; set solver.dt > 0.")
    if not t1 > t0:
        raise SolverError(f"the time span must be increasing, got t0={t0!r} and t1={t1!r}.")
    n = max(1, math.ceil((t1 - t0) / dt - 1e-6))
    grid = t0 + dt * torch.arange(n + 1, dtype=torch.float64)
    grid[-1] = t1
    return grid


#: Target size of one chunk of increments (numbers): memory is bounded by one chunk, whatever the grid.
CHUNK_NUMBERS = 1 << 21


class GridBrownian(BaseBrownian):
    """Brownian motion W on a fixed grid, increments drawn chunk by chunk from seeded generators.

    torchsde's `BrownianInterval` / `BrownianTree` answer arbitrary queries through a tree of Brownian
    bridges, which dominates the cost of fixed-step sampling. A fixed-step solver only ever asks for
    increments between consecutive grid points, so the increments are standard normals scaled by
    sqrt(step), drawn `chunk_steps` steps at a time: chunk c comes from its own generator (seeded by
    child c of `numpy.random.SeedSequence(seed)`), so a chunk can be regenerated on demand and memory
    holds one chunk (about `CHUNK_NUMBERS` numbers), never the whole path.

    Main arguments:
        t0, t1: time span (in the series' time units).
        dt: grid step; the grid is `make_grid(t0, t1, dt)`.
        size: `(batch, noise_channels)`, the shape of one increment.
        seed: seed of the increments; same seed, same path, bit for bit on the same device and dtype.

    Other arguments:
        dtype, device: of the increments (default: torch's default dtype, CPU).

    Queries off the grid raise `SolverError` (use `interval_brownian` for adaptive steps or adjoints).
    `W(tb) - W(ta)` across many steps sums the increments in between (chunks regenerated as needed).
    """

    __slots__ = ("_cache", "_chunk", "_device", "_dtype", "_n", "_points", "_scale", "_size", "_tol", "dt", "grid",
                 "seed", "t0", "t1")

    def __init__(
        self,
        t0: float,
        t1: float,
        *,
        dt: float,
        size: tuple[int, int],
        seed: int,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.t0, self.t1, self.dt, self.seed = float(t0), float(t1), float(dt), int(seed)
        self._dtype = dtype or torch.get_default_dtype()
        self._device = torch.device(device or "cpu")
        self._size = tuple(int(s) for s in size)
        self.grid = make_grid(self.t0, self.t1, self.dt)
        self._n = self.grid.numel() - 1
        self._points = self.grid.tolist()
        # torchsde accumulates `t + dt` in the state's dtype (float32 drifts), so match to the nearest point.
        self._tol = 0.25 * self.dt
        self._scale = torch.diff(self.grid).sqrt().to(dtype=self._dtype, device=self._device)
        self._chunk = max(1, CHUNK_NUMBERS // max(1, math.prod(self._size)))
        self._cache: tuple[int, Tensor] | None = None

    def _chunk_increments(self, c: int) -> Tensor:
        """Increments of steps [c * chunk, (c + 1) * chunk) as (steps, *size); the last chunk is cached."""
        if self._cache is not None and self._cache[0] == c:
            return self._cache[1]
        lo, hi = c * self._chunk, min((c + 1) * self._chunk, self._n)
        state = np.random.SeedSequence(self.seed, spawn_key=(c,)).generate_state(1, np.uint64)[0]
        generator = torch.Generator(device=self._device).manual_seed(int(state >> np.uint64(1)))
        z = torch.randn((hi - lo, *self._size), generator=generator, dtype=self._dtype, device=self._device)
        dw = z * self._scale[lo:hi].reshape(-1, *([1] * len(self._size)))
        self._cache = (c, dw)
        return dw

    def increment(self, ia: int, ib: int) -> Tensor:
        """W(grid[ib]) - W(grid[ia]) for grid indices ia <= ib, shape `size`."""
        if ib == ia + 1:
            c = ia // self._chunk
            return self._chunk_increments(c)[ia - c * self._chunk]
        total = torch.zeros(self._size, dtype=self._dtype, device=self._device)
        k = ia
        while k < ib:
            c = k // self._chunk
            stop = min(ib, (c + 1) * self._chunk)
            total = total + self._chunk_increments(c)[k - c * self._chunk:stop - c * self._chunk].sum(0)
            k = stop
        return total

    @property
    def dW(self) -> Tensor:
        """Every increment, shape (steps, *size) (materialised on request: for tests and small grids)."""
        return torch.stack([self.increment(k, k + 1) for k in range(self._n)])

    def index(self, t: float | Tensor) -> int:
        """Grid index of time `t` (raises `SolverError` if `t` is not a grid point)."""
        t = float(t)
        k = min(max(round((t - self.t0) / self.dt), 0), self._n - 1)
        if abs(t - self.t1) < abs(t - self._points[k]):
            k = self._n
        if abs(self._points[k] - t) > self._tol:
            raise SolverError(
                f"GridBrownian was queried at t={t:.9g}, which is not on its grid (t0={self.t0:g}, "
                f"dt={self.dt:g}, t1={self.t1:g}); it serves fixed-step solves only: use "
                "adaptive=False with the same dt, or interval_brownian(...) for adaptive steps and adjoints."
            )
        return k

    def __call__(self, ta: float | Tensor, tb: float | Tensor | None = None, return_U: bool = False, return_A: bool = False) -> Tensor:
        if return_U or return_A:
            raise SolverError(
                "GridBrownian has no Levy area (levy_area_approximation='none'); methods that need it "
                "('srk', 'log_ode') are solved with interval_brownian(...) instead."
            )
        if tb is None:
            return self.increment(0, self.index(ta))
        ia, ib = self.index(ta), self.index(tb)
        if ib < ia:
            return -self.increment(ib, ia)
        return self.increment(ia, ib)

    def __repr__(self) -> str:
        return f"GridBrownian(t0={self.t0:g}, t1={self.t1:g}, dt={self.dt:g}, size={self._size}, seed={self.seed})"

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def shape(self) -> tuple[int, ...]:
        return self._size

    @property
    def levy_area_approximation(self) -> str:
        return "none"

def interval_brownian(
    t0: float,
    t1: float,
    *,
    size: tuple[int, int],
    seed: int,
    levy_area_approximation: str = "none",
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> BrownianInterval:
    """torchsde's `BrownianInterval` seeded by `seed` (for adaptive steps, adjoints and Levy-area methods)."""
    return BrownianInterval(
        t0=float(t0), t1=float(t1), size=tuple(size), dtype=dtype or torch.get_default_dtype(),
        device=device, entropy=int(seed), levy_area_approximation=levy_area_approximation,
    )
