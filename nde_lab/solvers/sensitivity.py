"""Stiff solves with exact gradients: scipy's LSODA / BDF / Radau on the forward-sensitivity system.

Each batch member of a `MechanisticField` is solved on its own (its own steps) together with its
sensitivities S = dy/d(y0, theta), shape (D, D + P), from the augmented system

    dy/dt = f(t, y, theta),   dS/dt = J_y S + [0 | J_theta],   S(t0) = [I | 0],

integrated piecewise between breakpoints. `_ScipySolve` (a `torch.autograd.Function`) returns y at the
output times and saves S, so `backward` is the exact vector-Jacobian product for y0 and theta (up to
the solver tolerance): gradients reach Pyro's NUTS and SVI. Without gradients only the D states are solved.

The augmented right-hand side comes, fastest first, from the field's optional `sensitivity_rhs(theta)`
(a pure-Python closure (t, x) -> list over x = [y (D), S row-major (D, D + P)], columns y0 then theta:
no numpy call per evaluation, ~1-3 us), from its analytic `jacobians(t, y, theta)` (numpy, ~10-30 us
for tiny arrays) or, when that returns None, from torch autograd on `f` (general, ~0.3 ms). "lsoda" calls `scipy.integrate.odeint` (Fortran LSODA, switching between Adams
and BDF by itself; the cheapest per call); "bdf" and "radau" step scipy's `BDF` / `Radau` classes.
The implicit methods get the block-diagonal Jacobian diag(J_y, J_y (x) I) of the augmented system
(the coupling through second derivatives is left out: it only slows Newton, never biases the result).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from scipy import integrate
from torch import Tensor

from nde_lab.errors import SolverError

__all__ = ["MemberSolver", "as_mechanistic", "solve_scipy"]

Jacobians = Callable[[float, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def as_mechanistic(vector_field: object, method: str, what: str = "solver.method"):
    """The field as a `MechanisticField`, or a SolverError naming the method and what it needs."""
    from nde_lab.dynamics.mechanistic import MechanisticField

    if not isinstance(vector_field, MechanisticField):
        raise SolverError(
            f"{what}={method!r} solves each batch member with its own parameters theta and needs a MechanisticField "
            f"(nde_lab.dynamics.mechanistic), got {type(vector_field).__name__}; use a torchdiffeq method such as "
            "'dopri5' for neural vector fields."
        )
    return vector_field


def _torch_jacobians(field) -> Jacobians:
    """(f, df/dy, df/dtheta) of one member by torch autograd (one backward pass per state)."""

    def jac(t: float, y: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tt = torch.tensor(t, dtype=torch.float64)
        yt = torch.tensor(y, dtype=torch.float64).requires_grad_(True)
        pt = torch.tensor(theta, dtype=torch.float64).requires_grad_(True)
        with torch.enable_grad():
            f = field.f(tt, yt.unsqueeze(0), pt.unsqueeze(0)).reshape(-1)
            rows = [torch.autograd.grad(f[i], (yt, pt), retain_graph=True, allow_unused=True) for i in range(f.numel())]
        jy = np.stack([np.zeros(y.size) if gy is None else gy.numpy() for gy, _ in rows])
        jp = np.stack([np.zeros(theta.size) if gp is None else gp.numpy() for _, gp in rows])
        return f.detach().numpy(), jy, jp

    return jac


class MemberSolver:
    """Solves one member at a time over fixed output times, piecewise between breakpoints.

    Args:
        field: the MechanisticField (its `jacobians`, else torch autograd on `f`).
        times: output times (T,), monotone, times[0] the initial time.
        breaks: breakpoints strictly inside, in the direction of integration.
        method: "lsoda", "bdf" or "radau".
        rtol, atol, max_num_steps: tolerances and step budget (LSODA: per output interval).
    """

    def __init__(self, field, times: np.ndarray, breaks: list[float], method: str, rtol: float, atol: float,
                 max_num_steps: int, at_start: bool = False) -> None:
        self.field, self.method = field, method
        self.clip = bool(breaks) or at_start  # keep t strictly inside each piece
        self.rtol, self.atol, self.max_num_steps = rtol, atol, max_num_steps
        self.dim, self.n_params = field.dim, len(field.parameters)
        self.times = np.asarray(times, dtype=float)
        self.nfe = 0
        self.steps = 0
        self._jac: Jacobians | None = None
        sign = 1.0 if self.times[-1] > self.times[0] else -1.0
        edges = [self.times[0], *breaks, self.times[-1]]
        # (start, end, indices of the output times in (start, end], the solve's time points)
        self.pieces = []
        for a, b in itertools.pairwise(edges):
            idx = np.nonzero((sign * (self.times - a) > 0) & (sign * (self.times - b) <= 0))[0]
            points = np.unique(np.concatenate([[a], self.times[idx], [b]]))
            points = points if sign > 0 else points[::-1]
            self.pieces.append((a, b, idx, points))

    def jacobians(self, y0: np.ndarray, theta: np.ndarray) -> Jacobians:
        if self._jac is None:
            analytic = self.field.jacobians(float(self.times[0]), y0.copy(), theta.copy())
            self._jac = self.field.jacobians if analytic is not None else _torch_jacobians(self.field)
        return self._jac

    def _system(self, jac: Jacobians, theta: np.ndarray, lo: float, hi: float, sensitivities: bool):
        """(rhs(t, x), jacobian(t, x)) of the plain or augmented system on one piece; t is kept strictly
        inside (lo, hi) so a field that jumps at an edge is seen from inside the piece."""
        d, k = self.dim, self.dim + self.n_params
        lo, hi = min(lo, hi), max(lo, hi)
        lo_in, hi_in = np.nextafter(lo, hi), np.nextafter(hi, lo)
        n = d * (1 + k) if sensitivities else d
        out = np.empty(n)
        ds = out[d:].reshape(d, k) if sensitivities else None
        eye_k = np.eye(k)

        fast = self._fast_rhs(theta) if sensitivities else None
        if fast is not None and not self.clip:
            rhs_fast = fast  # one piece and nothing at t0: no clipping, no wrapper (~10% of a solve)
        elif fast is not None:
            def rhs_fast(t: float, x: np.ndarray) -> list[float]:
                return fast(lo_in if t < lo_in else hi_in if t > hi_in else t, x)

        def rhs(t: float, x: np.ndarray) -> np.ndarray:
            tt = lo_in if t < lo_in else hi_in if t > hi_in else t
            if not sensitivities:
                out[:] = jac(tt, x, theta)[0]
                return out
            f, jy, jp = jac(tt, x[:d], theta)
            out[:d] = f
            np.matmul(jy, x[d:].reshape(d, k), out=ds)
            ds[:, d:] += jp
            return out

        def jacobian(t: float, x: np.ndarray) -> np.ndarray:
            tt = lo_in if t < lo_in else hi_in if t > hi_in else t
            jy = jac(tt, x[:d], theta)[1]
            if not sensitivities:
                return jy
            full = np.zeros((n, n))
            full[:d, :d] = jy
            full[d:, d:] = np.kron(jy, eye_k)
            return full

        return (rhs if fast is None else rhs_fast), jacobian

    def _fast_rhs(self, theta: np.ndarray):
        """The field's optional pure-Python augmented right-hand side (`sensitivity_rhs(theta)`), or None."""
        make = getattr(self.field, "sensitivity_rhs", None)
        return make(theta) if callable(make) else None

    def solve(self, y0: np.ndarray, theta: np.ndarray, sensitivities: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """y at the output times (T, D) and, with `sensitivities`, S = dy/d(y0, theta) (T, D, D + P)."""
        d, k = self.dim, self.dim + self.n_params
        jac = self.jacobians(y0, theta)
        x = np.asarray(y0, dtype=float).copy()
        if sensitivities:
            s0 = np.zeros((d, k))
            s0[:, :d] = np.eye(d)
            x = np.concatenate([x, s0.ravel()])
        out = np.empty((len(self.times), x.size))
        out[0] = x
        for a, b, idx, points in self.pieces:
            rhs, jacobian = self._system(jac, theta, a, b, sensitivities)
            values = self._integrate(rhs, jacobian, x, points)
            out[idx] = values[np.searchsorted(points * np.sign(b - a), self.times[idx] * np.sign(b - a))]
            x = values[-1].copy()
        if not np.isfinite(out).all():
            raise SolverError(f"ODE solve failed (non-finite state) with method={self.method!r} "
                              f"(rtol={self.rtol:g}, atol={self.atol:g}).")
        return out[:, :d], (out[:, d:].reshape(-1, d, k) if sensitivities else None)

    def _integrate(self, rhs, jacobian, x0: np.ndarray, points: np.ndarray) -> np.ndarray:
        """x at every point (len(points), n), points[0] the start."""
        if self.method == "lsoda":
            with warnings.catch_warnings():  # the failure becomes a SolverError below, not a warning
                warnings.simplefilter("ignore", integrate.ODEintWarning)
                res, info = integrate.odeint(rhs, x0, points, Dfun=jacobian, tfirst=True, rtol=self.rtol,
                                             atol=self.atol, mxstep=self.max_num_steps, full_output=True)
            self.steps += int(info["nst"][-1])
            self.nfe += int(info["nfe"][-1])
            if info["message"] != "Integration successful.":
                what = info["message"]
                if "Excess work" in what:
                    what = "step budget exhausted: LSODA's max_num_steps applies per output interval"
                raise self._fail(what, float(info["tcur"][-1]) if len(info["tcur"]) else float(points[0]))
            return res
        cls = integrate.BDF if self.method == "bdf" else integrate.Radau
        solver = cls(lambda t, x: np.array(rhs(t, x)), points[0], x0, points[-1], rtol=self.rtol, atol=self.atol,
                     jac=jacobian)
        res = np.empty((len(points), x0.size))
        res[0] = x0
        j, steps, sign = 1, 0, np.sign(points[-1] - points[0])
        while j < len(points):
            if steps >= self.max_num_steps:
                self.nfe += solver.nfev
                raise self._fail("step budget exhausted", solver.t)
            message = solver.step()
            steps += 1
            if solver.status == "failed":
                raise self._fail(str(message), solver.t)
            k = j
            while k < len(points) and sign * (points[k] - solver.t) <= 0:
                k += 1
            if k > j:
                res[j:k] = solver.dense_output()(points[j:k]).T
                j = k
        self.steps += steps
        self.nfe += solver.nfev
        return res

    def _fail(self, what: str, t_reached: float) -> SolverError:
        return SolverError(
            f"ODE solve failed ({what.strip()}) with method={self.method!r} at t={t_reached:.6g} "
            f"(rtol={self.rtol:g}, atol={self.atol:g}, max_num_steps={self.max_num_steps}); hint: check the "
            "parameters of this member (a far-out draw), loosen rtol/atol or raise solver.max_num_steps."
        )


class _ScipySolve(torch.autograd.Function):
    """y (T, B, D) from y0 (B, D) and theta (B, P); backward: exact VJPs through the saved sensitivities."""

    @staticmethod
    def forward(ctx, y0: Tensor, theta: Tensor, solver: MemberSolver) -> Tensor:  # type: ignore[override]
        sens = bool(ctx.needs_input_grad[0] or ctx.needs_input_grad[1])
        y0n = y0.detach().to("cpu", torch.float64).numpy()
        thn = theta.detach().to("cpu", torch.float64).numpy()
        ys, ss = [], []
        for b in range(y0n.shape[0]):
            try:
                y, s = solver.solve(y0n[b], thn[b], sens)
            except SolverError as err:
                if y0n.shape[0] == 1:
                    raise
                raise SolverError(f"batch member {b} of {y0n.shape[0]} (theta={thn[b].tolist()}): {err}") from None
            ys.append(y)
            ss.append(s)
        y = torch.from_numpy(np.stack(ys, axis=1)).to(dtype=y0.dtype, device=y0.device)
        if sens:
            ctx.save_for_backward(torch.from_numpy(np.stack(ss, axis=1)).to(dtype=y0.dtype, device=y0.device))
        ctx.dim = y0.shape[-1]
        return y

    @staticmethod
    def backward(ctx, grad_y: Tensor):  # type: ignore[override]
        (s,) = ctx.saved_tensors  # (T, B, D, D + P)
        g = (grad_y.unsqueeze(-1) * s).sum(dim=(0, 2))  # (B, D + P); einsum costs ~0.4 ms of dispatch here
        d = ctx.dim
        return (g[:, :d] if ctx.needs_input_grad[0] else None, g[:, d:] if ctx.needs_input_grad[1] else None, None)


def solve_scipy(vector_field, y0: Tensor, t: Tensor, options, breaks: list[float], stats, *, at_start: bool = False) -> Tensor:
    """`solve_ode` for the scipy methods: y (T, *batch, D); counts nfe and steps into `stats`. Each piece
    between breakpoints (and a breakpoint at t[0], `at_start`) is solved with t kept strictly inside it."""
    field = as_mechanistic(vector_field, options.method)
    d, p = field.dim, len(field.parameters)
    if y0.shape[-1] != d:
        raise SolverError(f"y0 must have {d} states {list(field.states)} in its last dimension, got shape {tuple(y0.shape)}.")
    batch = torch.broadcast_shapes(y0.shape[:-1], field.batch_shape)
    n = math.prod(batch)
    y0b = y0.expand(*batch, d).reshape(n, d)
    theta = field.theta.to(y0.dtype).expand(*batch, p).reshape(n, p)
    solver = MemberSolver(field, t.detach().cpu().double().numpy(), breaks, options.method, options.rtol, options.atol,
                          options.max_num_steps, at_start)
    try:
        y = _ScipySolve.apply(y0b, theta, solver)
    finally:
        stats.nfe += solver.nfe
        stats.steps += solver.steps
    return y.reshape(t.shape[0], *batch, d)
