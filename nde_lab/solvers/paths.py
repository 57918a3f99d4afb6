"""`sample_paths`: SDE paths at requested output times, every one of them a step endpoint (never interpolated).

torchsde steps from t0 by `dt` and *interpolates* linearly to output times that fall between steps,
which shrinks the variance at off-grid times and the quadratic variation of finely sampled paths.
Here every interval between consecutive output times [t_k, t_{k+1}] is solved on its own refined
grid of m_k = ceil((t_{k+1} - t_k) / dt) equal steps of h_k <= dt, so output times are step ends.

Models that declare an exact transition (`exact_step(y, dt, z)`: OU, GBM) are sampled exactly by
default, with no discretisation error at all. Paths come in blocks of `BLOCK` paths, each block
(and each interval's Brownian increments within it) seeded by its own child of
`numpy.random.SeedSequence(seed)`: sampling is reproducible, with exact transitions path i of `n`
draws is path i of any larger draw, and memory is bounded by one block's increments over one interval.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from nde_lab.errors import SolverError
from nde_lab.solvers.sde import SDESolverOptions, solve_sde

__all__ = ["BLOCK", "PathSample", "has_exact_step", "sample_paths"]

#: Paths per seeded block (large enough that per-step Python overhead is negligible, small enough that a
#: block's normals, BLOCK x T numbers, stay a few tens of MB).
BLOCK = 32768


@dataclass
class PathSample:
    """Sampled paths and how they were made.

    Attributes:
        y: states (n, T, D), float64 (a view of a time-major buffer); masked (non-finite) paths are NaN.
        finite: which paths stayed finite, (n,) bool.
        method: "exact" (exact transitions) or the SDE method's name.
        step: the largest step used (0 for exact transitions), in time units.
        steps: steps per path in total; nfe_drift, nfe_diffusion: evaluations (0 when exact).
    """

    y: np.ndarray
    finite: np.ndarray
    method: str
    step: float
    steps: int = 0
    nfe_drift: int = 0
    nfe_diffusion: int = 0

    @property
    def masked_paths(self) -> int:
        return int((~self.finite).sum())


def has_exact_step(sde: nn.Module) -> bool:
    """Whether the model declares an exact transition sampler `exact_step(y, dt, z)`."""
    return callable(getattr(sde, "exact_step", None)) and bool(getattr(sde, "has_exact_transition", True))


def _child(seed: int, *index: int) -> int:
    state = np.random.SeedSequence(int(seed), spawn_key=tuple(index)).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def _check_times(times: np.ndarray) -> np.ndarray:
    times = np.asarray(times, dtype=np.float64).ravel()
    if times.size < 2 or not np.isfinite(times).all() or not (np.diff(times) > 0).all():
        raise SolverError(f"output times must be at least 2 finite, strictly increasing times; got {times.tolist()[:8]}.")
    return times


def sample_paths(sde: nn.Module, y0: Tensor, times: np.ndarray, *, options: SDESolverOptions, seed: int,
                 exact: bool = True) -> PathSample:
    """Paths of `sde` from y0 (n, D) observed at `times` (T,), y0 at times[0].

    Main arguments:
        sde: the model; with `exact=True` and an `exact_step(y, dt, z, params=)` method (and
            `constrained()` parameter values) it is sampled exactly.
        y0: initial states (n, D) in the model's dtype.
        times: strictly increasing output times (T,).
        options: the solver options (method, dt, on_nonfinite) for models without exact transitions.
        seed: root seed (blocks and intervals use its `SeedSequence` children).

    Returns:
        `PathSample` with y (n, T, D).
    """
    times = _check_times(times)
    n, d = y0.shape
    out = np.full((times.size, n, d), np.nan)  # time-major: every step writes one contiguous slab
    finite = np.ones(n, dtype=bool)
    use_exact = exact and has_exact_step(sde)
    dts = np.diff(times)
    m = [max(1, math.ceil(dt / options.dt - 1e-9)) for dt in dts]
    method = "exact" if use_exact else (options.method or ("euler" if sde.sde_type == "ito" else "midpoint"))
    sample = PathSample(out.transpose(1, 0, 2), finite, method, 0.0 if use_exact else float(max(dt / k for dt, k in zip(dts, m, strict=True))))
    with torch.no_grad():
        params = {k: v.detach() for k, v in sde.constrained().items()} if use_exact else None  # once, not per step
        for b, start in enumerate(range(0, n, BLOCK)):
            stop = min(n, start + BLOCK)
            y = y0[start:stop]
            out[0, start:stop] = y.cpu().numpy()
            if use_exact:
                # numpy's normals are drawn one after another from the stream, so the (rows, T - 1) draws
                # of path i are the same whatever the block's fill: path i depends on (seed, i) only
                z_all = np.random.Generator(np.random.PCG64(_child(seed, b))).standard_normal((y.shape[0], dts.size, d))
                z_all = torch.from_numpy(np.ascontiguousarray(z_all.transpose(1, 0, 2))).to(dtype=y.dtype, device=y.device)
                for k, dt in enumerate(dts):
                    y = sde.exact_step(y, float(dt), z_all[k], params=params)
                    out[k + 1, start:stop] = y.cpu().numpy()
                continue
            alive = np.ones(stop - start, dtype=bool)
            for k, dt in enumerate(dts):
                idx = np.flatnonzero(alive)
                if idx.size == 0:
                    break
                opts = dataclasses.replace(options, dt=float(dt) / m[k])
                t = torch.tensor([times[k], times[k + 1]], dtype=torch.float64)
                sol = solve_sde(sde, y, t.to(y.dtype), options=opts, seed=_child(seed, b, k))  # y: the alive paths
                sample.nfe_drift += sol.stats.nfe_drift
                sample.nfe_diffusion += sol.stats.nfe_diffusion
                sample.steps += sol.stats.steps if b == 0 else 0
                y_new = sol.y[-1]
                ok = sol.finite.cpu().numpy()
                alive[idx[~ok]] = False
                out[:, start + idx[~ok]] = np.nan
                y = y_new[ok] if not ok.all() else y_new
                out[k + 1, start + idx[ok]] = y.cpu().numpy()
            finite[start:stop] = alive
    if use_exact:
        sample.steps = int(dts.size)
    return sample
