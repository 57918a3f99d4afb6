"""Per-draw adaptive solves: every batch member of a `MechanisticField` with its own step size.

`torchdiffeq`'s adaptive methods take one step size for a whole batch (the error norm is over every
member), so one stiff or fast draw among thousands sets the step for all and can exhaust the step
budget of the batch. Here the same Runge-Kutta tableau (torchdiffeq's, so orders and error estimates
match) is stepped with a step size, an error ratio, an accept/reject decision and a step count per
member; `t` reaches the field as a tensor of shape (n,) (the contract of `MechanisticField`). Each
member lands exactly on every output time and breakpoint (no interpolation; after a breakpoint the
field is evaluated just to its right). Members that finish drop out of the batch (the arrays are
compacted), so the work of a step is the work of the members still running.

The stragglers: once half the batch is done, a member whose current step would need more than
`HANDOFF_FACTOR` times the steps the first half took to reach the end (a stiff draw, its step held
down by stability) is handed over; once all but a few members are done (`STRAGGLERS`), the rest may
run for as many more steps as the bulk took, and one whose step would need more is handed over.
Those, and any member that exceeds `max_num_steps` steps of its own, are finished by LSODA with forward sensitivities (`sensitivity.py`, exact gradients).
So a stiff draw costs about twice the bulk's steps plus its own implicit solve, never the batch's
budget. torchode (Lienen & Guennemann 2022) does the per-member stepping too, but steps every member
until the last one is done and has no implicit fallback; the loop here is ~150 lines of torch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchdiffeq._impl.odeint import SOLVERS

from nde_lab.errors import SolverError
from nde_lab.solvers.sensitivity import MemberSolver, _ScipySolve, as_mechanistic

__all__ = ["HANDOFF_FACTOR", "STRAGGLERS", "solve_per_draw"]

#: the batch is "done but for stragglers" when at most this fraction (and at least one member) still runs
STRAGGLERS = 0.01
#: before that, once half the batch is done, a member whose current step needs more than this many times
#: the steps the first half took to reach the end is handed over
HANDOFF_FACTOR = 4
_SAFETY, _IFACTOR, _DFACTOR = 0.9, 10.0, 0.2


def _rms(x: Tensor) -> Tensor:
    return x.pow(2).mean(dim=-1).sqrt()


def _combine(ks: list[Tensor], pairs: list[tuple[int, float]]) -> Tensor:
    """sum_j c_j ks[j] over the (j, c_j) pairs."""
    (j, c), *rest = pairs
    out = ks[j] * c
    for j, c in rest:
        out = torch.add(out, ks[j], alpha=c)
    return out


class _Tableau:
    def __init__(self, method: str, dtype: torch.dtype, device: torch.device) -> None:
        solver = SOLVERS[method]
        tab = solver.tableau
        self.order = solver.order
        self.alpha = [float(a) for a in tab.alpha]
        # (stage index, coefficient) pairs of every linear combination, zeros left out
        self.beta = [[(j, float(b)) for j, b in enumerate(row.tolist()) if b != 0.0] for row in tab.beta]
        self.c_sol = [(j, float(c)) for j, c in enumerate(tab.c_sol.tolist()) if c != 0.0]
        self.c_error = [(j, float(c)) for j, c in enumerate(tab.c_error.tolist()) if c != 0.0]
        # first same as last: the last stage is f(t1, y1), reused as the next step's first
        self.fsal = bool(tab.c_sol[-1] == 0 and torch.equal(tab.c_sol[:-1], tab.beta[-1]) and self.alpha[-1] == 1.0)


def solve_per_draw(vector_field, y0: Tensor, t: Tensor, options, breaks: list[float], stats, *,
                   at_start: bool = False) -> Tensor:
    """`solve_ode` with `per_draw=True`: y (T, *batch, D); stats.steps / steps_rejected are the largest
    over members, nfe counts batched field calls plus the LSODA evaluations of handed-off members."""
    field = as_mechanistic(vector_field, options.method, what="solver.per_draw=true with solver.method")
    if not bool((t[1:] > t[:-1]).all()):
        raise SolverError("solver.per_draw=true needs increasing output times t.")
    d, p = field.dim, len(field.parameters)
    if y0.shape[-1] != d:
        raise SolverError(f"y0 must have {d} states {list(field.states)} in its last dimension, got shape {tuple(y0.shape)}.")
    batch = torch.broadcast_shapes(y0.shape[:-1], field.batch_shape)
    n_all = math.prod(batch)
    y0b = y0.expand(*batch, d).reshape(n_all, d)
    theta_all = field.theta.to(y0.dtype).expand(*batch, p).reshape(n_all, p)
    y_out, handed = _explicit(field, y0b, theta_all, t, options, breaks, stats, at_start)
    if handed.numel():
        solver = MemberSolver(field, t.detach().cpu().double().numpy(), breaks, "lsoda", options.rtol, options.atol,
                              max(options.max_num_steps, 100_000), at_start)
        try:
            y_stiff = _ScipySolve.apply(y0b[handed], theta_all[handed], solver)  # (T, h, D)
        finally:
            stats.nfe += solver.nfe
        y_out = y_out.index_copy(1, handed, y_stiff)
    stats.members_implicit = int(handed.numel())
    return y_out.reshape(t.shape[0], *batch, d)


def _explicit(field, y0: Tensor, theta: Tensor, t: Tensor, options, breaks: list[float], stats,
              at_start: bool) -> tuple[Tensor, Tensor]:
    """The per-member Runge-Kutta loop: (y (T, B, D), indices of the members handed to LSODA)."""
    n_all, d = y0.shape
    dtype, device = y0.dtype, y0.device
    tab = _Tableau(options.method, dtype, device)
    rtol, atol = options.rtol, options.atol
    stops = torch.tensor(sorted({*t[1:].tolist(), *breaks}), dtype=dtype, device=device)
    is_break = torch.tensor([float(s) in set(breaks) for s in stops.tolist()], device=device)
    tv = t.to(dtype=dtype, device=device).contiguous()
    out_of_stop = torch.searchsorted(tv, stops.contiguous())  # output index of each stop (if it is one)
    is_out = torch.isin(stops, tv[1:])
    n_stops = stops.numel()
    t_end = tv[-1]

    def f(tt: Tensor, yy: Tensor, th: Tensor) -> Tensor:
        stats.nfe += 1
        return field.f(tt, yy, th)

    idx = torch.arange(n_all, device=device)  # global member index of each running row
    y, th = y0, theta
    tt = tv[0].expand(n_all).clone()
    nxt = torch.zeros(n_all, dtype=torch.long, device=device)  # next stop of each running row
    f0 = f(torch.nextafter(tt, tt + 1) if at_start else tt, y, th)
    h = _initial_step(f, tt, y, th, f0, tab.order, rtol, atol) if options.step_size is None else \
        torch.full((n_all,), float(options.step_size), dtype=dtype, device=device)
    steps = torch.zeros(n_all, dtype=torch.long, device=device)
    rejected = torch.zeros(n_all, dtype=torch.long, device=device)
    values, positions = [y0], [idx.clone()]  # output index 0 is y0
    handed: list[Tensor] = []
    threshold = max(1, int(STRAGGLERS * n_all))
    bulk_iters, half_iters, it = None, None, 0
    while idx.numel():
        it += 1
        stop = stops[nxt]
        land = tt + h >= stop
        dt = torch.where(land, stop - tt, h)
        t1 = torch.where(land, stop, tt + dt)
        ks = [f0]
        dtc = dt.unsqueeze(-1)
        ti_last = torch.nextafter(t1, tt)  # the last stage sees the left side of a breakpoint at t1
        for alpha, beta in zip(tab.alpha, tab.beta, strict=True):
            yi = y + dtc * _combine(ks, beta)
            ks.append(f(ti_last if alpha == 1.0 else tt + alpha * dt, yi, th))
        y1 = yi if tab.fsal else y + dtc * _combine(ks, tab.c_sol)
        with torch.no_grad():
            err = dtc * _combine(ks, tab.c_error)
            ratio = _rms(err / (atol + rtol * torch.maximum(y.abs(), y1.abs())))
            ok = ratio <= 1  # False for NaN
            # torchdiffeq's rule: factor 0.9 ratio^(-1/order) in [0.2, 10], never shrinking after an accepted step
            factor = (_SAFETY * ratio.pow(-1.0 / tab.order)).clamp(max=_IFACTOR).maximum(
                torch.where(ok, 1.0, _DFACTOR)).nan_to_num(nan=_DFACTOR)
            h_new = dt * factor
        steps += ok.long()
        rejected += (~ok).long()
        okc = ok.unsqueeze(-1)
        y = torch.where(okc, y1, y)
        f_last = ks[-1] if tab.fsal else None
        tt = torch.where(ok, t1, tt)
        landed = ok & land
        if bool(landed.any()):
            on_out = landed & is_out[nxt]
            if bool(on_out.any()):
                rows = on_out.nonzero().squeeze(-1)
                values.append(y[rows])
                positions.append(out_of_stop[nxt[rows]] * n_all + idx[rows])
            on_break = landed & is_break[nxt]
            nxt = nxt + landed.long()
        else:
            on_break = None
        # keep the step size after a landing only if it did not shrink to land
        h = torch.where(landed & (h_new < h), h, h_new)
        f0 = torch.where(okc, f_last, f0) if tab.fsal else torch.where(okc, f(tt, y, th), f0)
        if on_break is not None and bool(on_break.any()):  # just right of a breakpoint: the field changed
            f0 = torch.where(on_break.unsqueeze(-1), f(torch.nextafter(tt, tt + 1), y, th), f0)
        done = nxt >= n_stops
        running = int((~done).sum())
        if half_iters is None and 2 * running <= n_all:
            half_iters = it
        if bulk_iters is None and running <= threshold and running < n_all:
            bulk_iters = it
        over = (steps + rejected >= options.max_num_steps) | (~torch.isfinite(y).all(dim=-1))
        if bulk_iters is not None and running:
            # a straggler whose step would need more than the bulk's steps again is handed over now
            over = over | ((t_end - tt) > (2 * bulk_iters - it) * h)
        elif half_iters is not None and running:
            # many stiff draws: once half the batch is done, one whose step would need more than 4x the
            # steps the first half took is handed over too (its step is held down by stability)
            over = over | ((t_end - tt) > HANDOFF_FACTOR * half_iters * h)
        over = over & ~done
        if bool(over.any()):
            handed.append(idx[over])
        keep = ~(done | over)
        if not bool(keep.all()):
            stats.steps = max(stats.steps, int(steps.max()))
            stats.steps_rejected = max(stats.steps_rejected, int(rejected.max()))
            rows = keep.nonzero().squeeze(-1)
            idx, y, th, tt, h, f0, nxt = idx[rows], y[rows], th[rows], tt[rows], h[rows], f0[rows], nxt[rows]
            steps, rejected = steps[rows], rejected[rows]
    handed_idx = torch.cat(handed) if handed else torch.zeros(0, dtype=torch.long, device=device)
    pos = torch.cat(positions)
    vals = torch.cat(values)
    if handed_idx.numel():
        keep = ~torch.isin(pos % n_all, handed_idx)
        pos, vals = pos[keep], vals[keep]
        filler = torch.zeros(t.shape[0] * handed_idx.numel(), d, dtype=dtype, device=device)
        fill_pos = (torch.arange(t.shape[0], device=device).unsqueeze(-1) * n_all + handed_idx).reshape(-1)
        pos, vals = torch.cat([pos, fill_pos]), torch.cat([vals, filler])
    order = torch.argsort(pos)
    if order.numel() != t.shape[0] * n_all:
        raise SolverError(f"per-draw solve: {order.numel()} states for {t.shape[0]} times x {n_all} members (a bug).")
    return vals[order].reshape(t.shape[0], n_all, d), handed_idx


def _initial_step(f, t0: Tensor, y0: Tensor, th: Tensor, f0: Tensor, order: int, rtol: float, atol: float) -> Tensor:
    """Hairer, Norsett & Wanner's starting step (as torchdiffeq's `_select_initial_step`), per member."""
    with torch.no_grad():
        scale = atol + y0.abs() * rtol
        d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), torch.full_like(d0, 1e-6), 0.01 * d0 / d1.clamp_min(1e-300))
        f1 = f(t0 + h0, y0 + h0.unsqueeze(-1) * f0, th)
        d2 = _rms((f1 - f0) / scale) / h0
        dmax = torch.maximum(d1, d2)
        h1 = torch.where(dmax <= 1e-15, torch.maximum(torch.full_like(h0, 1e-6), h0 * 1e-3),
                         (0.01 / dmax.clamp_min(1e-300)) ** (1.0 / (order + 1)))
        return torch.minimum(100 * h0, h1)
