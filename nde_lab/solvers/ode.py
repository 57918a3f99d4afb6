"""The one entry point that solves ODEs: `solve_ode`, over torchdiffeq, with validation and statistics."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from nde_lab.errors import SolverError
from nde_lab.solvers.breakpoints import breakpoints_inside, step_grid
from nde_lab.solvers.compiled import compiled
from nde_lab.solvers.registry import MethodInfo, check_choice
from nde_lab.solvers.stiffness import stiffness_note

__all__ = [
    "ODE_METHODS",
    "ODEMethod",
    "ODESolution",
    "ODESolverOptions",
    "SolverStats",
    "solve_ode",
]

ODEMethod = Literal[
    "euler", "midpoint", "heun2", "heun3", "rk4",
    "dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun",
    "lsoda", "bdf", "radau",
]

#: The methods `solve_ode` accepts, with their declared order and whether they adapt their step.
ODE_METHODS: dict[str, MethodInfo] = {
    "euler": MethodInfo(order=1.0, adaptive=False, stages=1),
    "midpoint": MethodInfo(order=2.0, adaptive=False, stages=2),
    "heun2": MethodInfo(order=2.0, adaptive=False, stages=2),
    "heun3": MethodInfo(order=3.0, adaptive=False, stages=3),
    "rk4": MethodInfo(order=4.0, adaptive=False, stages=4),
    "dopri5": MethodInfo(order=5.0, adaptive=True, stages=6),
    "dopri8": MethodInfo(order=8.0, adaptive=True, stages=13),
    "bosh3": MethodInfo(order=3.0, adaptive=True, stages=3),
    "fehlberg2": MethodInfo(order=2.0, adaptive=True, stages=3),
    "adaptive_heun": MethodInfo(order=2.0, adaptive=True, stages=2),
    # scipy, per batch member, forward sensitivities for gradients (MechanisticFields; `sensitivity.py`)
    "lsoda": MethodInfo(order=5.0, adaptive=True, stages=1, implicit=True),
    "bdf": MethodInfo(order=5.0, adaptive=True, stages=1, implicit=True),
    "radau": MethodInfo(order=5.0, adaptive=True, stages=1, implicit=True),
}


@dataclass
class ODESolverOptions:
    """How to solve an ODE; every field is a recipe key under `solver:`.

    Args:
        method: integration method (see `ODE_METHODS`); fixed-step methods need `step_size`.
        rtol: relative tolerance of adaptive methods.
        atol: absolute tolerance of adaptive methods.
        step_size: step of fixed-step methods, in the series' time units.
        adjoint: back-propagate by the adjoint method (Chen et al. 2018), O(1) memory in time.
        max_num_steps: step budget; the solve fails with `SolverError` when it is exhausted
            (per batch member with `per_draw` and the scipy methods; LSODA: per output interval).
        breakpoints: times where the field is not smooth in t, besides the field's own `breakpoints()`
            (a `MechanisticField`'s inputs and jump times); the solve steps onto each and restarts there.
        per_draw: adaptive methods only: every batch member of a `MechanisticField` gets its own step
            size and step count (`per_draw.py`); members left over when the batch is done, or out of
            budget, are finished by LSODA with forward sensitivities, so one hard draw costs its own
            steps, not everyone's.
        compile: run the vector field through `torch.compile(dynamic=False)` (compiled once per field;
            the first solve pays the compile, tens of seconds on a CPU).

    The scipy methods "lsoda", "bdf", "radau" (implicit or stiffness-switching) solve each batch member of
    a `MechanisticField` on its own with the forward-sensitivity system, so gradients reach y0 and theta.
    """

    method: ODEMethod = "dopri5"
    rtol: float = 1e-6
    atol: float = 1e-8
    step_size: float | None = None
    adjoint: bool = False
    max_num_steps: int = 10_000
    breakpoints: list[float] | None = None
    per_draw: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        check_choice("solver.method", self.method, ODE_METHODS)
        info = ODE_METHODS[self.method]
        if not info.adaptive and self.step_size is None:
            raise SolverError(
                f"solver.method={self.method!r} is a fixed-step method and needs solver.step_size; "
                "set a step (for instance a tenth of the observation spacing) or choose an adaptive "
                "method such as 'dopri5'."
            )
        if self.step_size is not None and not (self.step_size > 0 and math.isfinite(self.step_size)):
            raise SolverError(f"solver.step_size must be a positive finite number, got {self.step_size!r}.")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise SolverError(f"solver.{name} must be a positive finite number, got {value!r}.")
        if self.max_num_steps < 1:
            raise SolverError(f"solver.max_num_steps must be >= 1, got {self.max_num_steps!r}.")
        if self.breakpoints is not None and not all(math.isfinite(float(b)) for b in self.breakpoints):
            raise SolverError(f"solver.breakpoints must be finite times, got {self.breakpoints!r}.")
        if self.per_draw and not (info.adaptive and not info.implicit):
            raise SolverError(f"solver.per_draw=true steps each draw with its own adaptive step: it needs an explicit "
                              f"adaptive method such as 'dopri5', got solver.method={self.method!r}.")
        if (self.per_draw or info.implicit) and self.adjoint:
            raise SolverError(f"solver.adjoint=true cannot be combined with solver.method={self.method!r}"
                              f"{' and solver.per_draw=true' if self.per_draw else ''}; those solves give exact "
                              "gradients through forward sensitivities or autograd.")

    @property
    def info(self) -> MethodInfo:
        return ODE_METHODS[self.method]


@dataclass
class SolverStats:
    """Work done by one solve, counted exactly (not inferred).

    Attributes:
        method: the method's name.
        nfe: vector-field evaluations of the forward solve.
        steps: accepted steps of the forward solve (fixed-step methods: every step).
        steps_rejected: rejected (retried) steps of an adaptive forward solve.
        nfe_backward, steps_backward: the same for the adjoint's backward solve (filled in when
            `.backward()` runs; 0 without adjoint), which has its own budget of `max_num_steps` steps.
        status, message: "success" or "failed" with the reason.
        members_implicit: batch members finished by LSODA in a `per_draw` solve (stiff or over budget).

    Steps come from torchdiffeq's step callbacks (`callback_step`, `callback_accept_step`,
    `callback_reject_step` and their `_adjoint` versions), so they are exact for every method.
    """

    method: str
    nfe: int = 0
    steps: int = 0
    steps_rejected: int = 0
    nfe_backward: int = 0
    steps_backward: int = 0
    status: Literal["success", "failed"] = "success"
    message: str = ""
    members_implicit: int = 0

    def as_dict(self) -> dict[str, float | int | str]:
        return {"method": self.method, "nfe": self.nfe, "steps": self.steps, "steps_rejected": self.steps_rejected,
                "nfe_backward": self.nfe_backward, "steps_backward": self.steps_backward, "status": self.status}


@dataclass
class ODESolution:
    """A solved trajectory.

    Attributes:
        t: output times, shape (T,).
        y: states at `t`, shape (T, *batch, D) (time first, as torchdiffeq returns it).
        stats: function evaluations, steps and status of the forward solve.
    """

    t: Tensor
    y: Tensor
    stats: SolverStats = field(default_factory=lambda: SolverStats(method="?"))


class _CountingField:
    """Wraps a vector field to count evaluations and steps and to enforce the step budgets itself.

    torchdiffeq signals an exhausted budget and a step-size underflow with `assert`, which `python -O`
    strips (an underflow then loops forever); counting here keeps both failures loud under -O too.
    The forward solve and the adjoint's backward solve are counted and budgeted separately (each
    `max_num_steps` steps); exhausting either raises `SolverError` (also from inside `.backward()`).
    A plain callable, not an `nn.Module`: the adjoint gets its parameters explicitly, and a module
    call costs microseconds per evaluation that small solves feel.
    """

    __slots__ = ("_last_step", "_last_t", "adaptive", "backward", "fail", "max_nfe", "max_steps", "right_of", "stats",
                 "vector_field")

    def __init__(self, vector_field: nn.Module, *, max_nfe: int, max_steps: int, stats: SolverStats, adaptive: bool,
                 fail: Callable[[str, float], SolverError]) -> None:
        self.vector_field, self.adaptive = vector_field, adaptive
        self.max_nfe, self.max_steps = max_nfe, max_steps
        self.stats, self.fail = stats, fail
        self.backward = False
        self._last_t: Tensor | None = None
        self._last_step: tuple[Tensor, Tensor, Tensor] | None = None
        self.right_of: Tensor | None = None  # a breakpoint at t0: evaluations at t0 see its right side

    @property
    def nfe(self) -> int:
        return self.stats.nfe_backward if self.backward else self.stats.nfe

    @property
    def last_t(self) -> float:
        """The time of the last evaluation (converted only when asked: a GPU sync per call would cost)."""
        return float("nan") if self._last_t is None else float(self._last_t.detach())

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        self._last_t = t
        if self.backward:
            self.stats.nfe_backward += 1
            if self.stats.nfe_backward > self.max_nfe:
                raise self.fail("adjoint backward solve: evaluation budget exhausted", self.last_t)
        else:
            self.stats.nfe += 1
            if self.stats.nfe > self.max_nfe:
                raise self.fail("evaluation budget exhausted", self.last_t)
            if self.right_of is not None and bool(t == self.right_of):
                t = torch.nextafter(t, t + 1)
        return self.vector_field(t, y)

    # torchdiffeq's step callbacks (t0, y0, dt): exact step counts for every method
    @property
    def last_state(self) -> tuple[Tensor, Tensor, Tensor] | None:
        """(t, y, dt) of the last attempted forward step, or None before the first."""
        return self._last_step

    def callback_step(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        if not self.backward:
            self._last_step = (t0, y0, dt)
        if self.stats.steps + self.stats.steps_rejected >= self.max_steps:
            raise self.fail("step budget exhausted", float(t0))
        if not self.adaptive:  # fixed-grid solvers only announce steps
            self.stats.steps += 1

    def callback_step_adjoint(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        if self.stats.steps_backward >= self.max_steps:
            raise self.fail("adjoint backward solve: step budget exhausted", float(t0))
        self.stats.steps_backward += 1



class _AdaptiveCountingField(_CountingField):
    """`_CountingField` for adaptive methods: accepted and rejected steps come from their own callbacks
    (fixed-grid solvers have only `callback_step`, and warn about callbacks they do not support)."""

    __slots__ = ()

    def callback_accept_step(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.stats.steps += 1

    def callback_reject_step(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        self.stats.steps_rejected += 1

    def callback_accept_step_adjoint(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        return None

    def callback_reject_step_adjoint(self, t0: Tensor, y0: Tensor, dt: Tensor) -> None:
        return None


def _hint(options: ODESolverOptions) -> str:
    if options.info.adaptive:
        return (
            "the dynamics may be stiff or blowing up: check the vector field's scale and initial "
            "weights, loosen rtol/atol, raise solver.max_num_steps, or lower the learning rate"
        )
    return (
        "the state left the finite range: reduce solver.step_size, use a higher-order method, "
        "or lower the learning rate"
    )


def _failure(options: ODESolverOptions, what: str, t_reached: float) -> SolverError:
    return SolverError(
        f"ODE solve failed ({what}) with method={options.method!r} at t={t_reached:.6g} "
        f"(rtol={options.rtol:g}, atol={options.atol:g}, step_size={options.step_size}, "
        f"max_num_steps={options.max_num_steps}); hint: {_hint(options)}."
    )


def _validate_inputs(y0: Tensor, t: Tensor) -> None:
    if not isinstance(t, Tensor) or t.ndim != 1 or t.numel() < 2:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise SolverError(f"t must be a 1-D tensor of at least 2 times, got shape {shape}.")
    if not (torch.is_floating_point(t) and torch.is_floating_point(y0)):
        raise SolverError(f"t and y0 must be floating point, got dtypes {t.dtype} and {y0.dtype}.")
    diffs = t[1:] - t[:-1]
    if not ((diffs > 0).all() or (diffs < 0).all()):
        raise SolverError("t must be strictly increasing (or strictly decreasing); got repeated or unordered times.")
    if not torch.isfinite(y0).all():
        raise SolverError("the initial state y0 has non-finite entries.")


def solve_ode(
    vector_field: nn.Module,
    y0: Tensor,
    t: Tensor,
    options: ODESolverOptions | None = None,
    *,
    throw: bool = True,
) -> ODESolution:
    """Solve dy/dt = f(t, y) from y(t[0]) = y0 and return the states at every time of `t`.

    Main arguments:
        vector_field: module called as f(t, y) with t a scalar tensor and y of shape (*batch, D).
        y0: initial state, shape (*batch, D); batch dimensions are solved together in one call.
        t: output times, shape (T,), strictly monotone, t[0] the initial time.

    Other arguments:
        options: method, tolerances, step, adjoint and step budget (default: dopri5, rtol 1e-6).
        throw: raise `SolverError` on failure (default); if False, return a solution whose
            `stats.status` is "failed", with `stats.message` set and `y` filled with NaN.

    Returns:
        ODESolution with y of shape (T, *batch, D) and the forward solve's statistics.
    """
    options = options or ODESolverOptions()
    _validate_inputs(y0, t)
    info = options.info
    breaks, at_start = breakpoints_inside(vector_field, options.breakpoints, t)
    stats = SolverStats(method=options.method)
    if info.implicit or options.per_draw:
        if options.per_draw:
            from nde_lab.solvers.per_draw import solve_per_draw as solver
        else:
            from nde_lab.solvers.sensitivity import solve_scipy as solver
        try:
            y = solver(vector_field, y0, t, options, breaks, stats, at_start=at_start)
        except SolverError as err:
            return _failed(err, stats, t, y0, throw)
        return ODESolution(t=t, y=y, stats=stats)
    field_ = compiled(vector_field) if options.compile else vector_field
    max_nfe = options.max_num_steps * info.stages + 2 * info.stages + 2
    counted = (_AdaptiveCountingField if info.adaptive else _CountingField)(field_, max_nfe=max_nfe, max_steps=options.max_num_steps, stats=stats,
                             adaptive=info.adaptive, fail=lambda what, t_: _failure(options, what, t_))
    torch_options: dict[str, object] = {}
    if info.adaptive:
        # the budget is counted and enforced here (forward and adjoint apart, SolverError on exhaustion);
        # torchdiffeq's own per-interval check would raise a bare AssertionError inside .backward()
        torch_options["max_num_steps"] = 2**31 - 1
        if options.step_size is not None:
            torch_options["first_step"] = options.step_size
        if breaks:
            torch_options["jump_t"] = torch.tensor(breaks, dtype=t.dtype, device=t.device)
        if at_start and float(t[-1]) > float(t[0]):
            counted.right_of = t[0].to(y0.dtype)
    else:
        if breaks or at_start:  # restart the grid at every breakpoint; stages at a grid point see its right side
            torch_options["grid_constructor"] = step_grid(options.step_size, breaks)
            torch_options["perturb"] = True
        else:
            torch_options["step_size"] = options.step_size
        n_steps = abs(float(t[-1] - t[0])) / options.step_size + len(breaks)
        if n_steps > options.max_num_steps:
            raise SolverError(
                f"solver.step_size={options.step_size:g} over [{float(t[0]):g}, {float(t[-1]):g}] needs "
                f"{math.ceil(n_steps)} steps, more than solver.max_num_steps={options.max_num_steps}; "
                "raise the budget or the step."
            )
    integrate = odeint_adjoint if options.adjoint else odeint
    kwargs: dict[str, object] = dict(rtol=options.rtol, atol=options.atol, method=options.method, options=torch_options)
    if options.adjoint:
        kwargs["adjoint_params"] = _adjoint_params(vector_field)
    try:
        try:
            y = integrate(counted, y0, t, **kwargs)
        except AssertionError as err:
            text = str(err)
            what = "step budget exhausted" if "max_num_steps" in text else (
                "step size underflow" if "underflow" in text else
                "non-finite state" if "non-finite" in text else f"torchdiffeq check: {text[:120]}"
            )
            raise _failure(options, what, counted.last_t) from None
        finite = torch.isfinite(y).reshape(y.shape[0], -1).all(dim=1)
        if not bool(finite.all()):
            first_bad = int((~finite).nonzero()[0, 0])
            raise _failure(options, "non-finite state", float(t[first_bad]))
    except SolverError as err:
        if info.adaptive and not counted.backward and ("budget" in str(err) or "underflow" in str(err)):
            note = stiffness_note(vector_field, counted.last_state, t)
            if note:
                err = SolverError(f"{err} {note}")
        return _failed(err, stats, t, y0, throw)
    counted.backward = True  # from here on (the adjoint's .backward()) evaluations count as backward
    return ODESolution(t=t, y=y, stats=stats)


def _adjoint_params(vector_field: nn.Module) -> tuple[Tensor, ...]:
    """The tensors the adjoint differentiates: the module's trainable parameters and, for a
    MechanisticField (whose class attribute `parameters` names theta's columns), theta itself."""
    params = [p for p in nn.Module.parameters(vector_field) if p.requires_grad]
    theta = getattr(vector_field, "theta", None)
    if not callable(getattr(vector_field, "parameters", None)) and isinstance(theta, Tensor) and theta.requires_grad:
        params.append(theta)
    return tuple(params)


def _failed(err: SolverError, stats: SolverStats, t: Tensor, y0: Tensor, throw: bool) -> ODESolution:
    """Raise `err`, or (throw=False) return the failed solution: NaN states and the message in `stats`."""
    if throw:
        raise err
    stats.status, stats.message = "failed", str(err)
    nan = torch.full((t.shape[0], *y0.shape), float("nan"), dtype=y0.dtype, device=y0.device)
    return ODESolution(t=t, y=nan, stats=stats)
