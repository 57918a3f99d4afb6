"""Breakpoints of a solve: times where the vector field is not smooth in t, and the fixed-step grid through them.

A field that jumps at t_b (a forcing switched on, a dose) must be integrated as two smooth pieces:
the step grid contains t_b, and the stages of the step that starts at t_b see the field's value to the
right of it. Fixed-step methods get `step_grid` as torchdiffeq's `grid_constructor` plus its `perturb`
option (first stage at nextafter(t0), last at nextafter(t1) backwards); adaptive torchdiffeq methods get
the times as `jump_t`; the scipy methods integrate piecewise (`nde_lab.solvers.sensitivity`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["breakpoints_inside", "step_grid"]


def breakpoints_inside(vector_field: object, extra: Sequence[float] | None, t: Tensor) -> tuple[list[float], bool]:
    """The field's `breakpoints()` (if it has them) and `extra` strictly inside the span of `t`, sorted
    in the direction of integration, and whether one sits at t[0] (then the solve starts to its right)."""
    times = [float(b) for b in extra or ()]
    method = getattr(vector_field, "breakpoints", None)
    if callable(method):
        times += [float(b) for b in method()]
    lo, hi = sorted((float(t[0]), float(t[-1])))
    inside = sorted({b for b in times if lo < b < hi and math.isfinite(b)})
    at_start = float(t[0]) in times
    return (inside if float(t[-1]) > float(t[0]) else inside[::-1]), at_start


def _piece(start: float, end: float, step: float) -> list[float]:
    """Grid from start to end in steps of `step` (the last one shortened), as torchdiffeq builds it,
    without the sliver step that round-off in (end - start) / step can leave."""
    span = end - start
    n = max(1, math.ceil(abs(span) / step - 1e-9))
    direction = 1.0 if span > 0 else -1.0
    return [start + direction * k * step for k in range(n)] + [end]


def step_grid(step: float, breakpoints: Sequence[float]) -> object:
    """A torchdiffeq `grid_constructor` (func, y0, t) -> grid: steps of `step` restarted at every breakpoint
    and every output time, so each is a grid point (torchdiffeq interpolates linearly to output times
    between grid points, an O(h^2) error that a grid shifted by a breakpoint would otherwise add)."""

    def construct(func: object, y0: Tensor, t: Tensor) -> Tensor:
        sign = 1.0 if float(t[-1]) > float(t[0]) else -1.0
        lo, hi = sorted((float(t[0]), float(t[-1])))  # the adjoint asks for one output interval at a time
        edges = sorted({*t.tolist(), *(b for b in breakpoints if lo < b < hi)}, key=lambda x: sign * x)
        grid: list[float] = [edges[0]]
        for a, b in itertools.pairwise(edges):
            grid += _piece(a, b, step)[1:]
        return torch.tensor(grid, dtype=t.dtype, device=t.device)

    return construct
