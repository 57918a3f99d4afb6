"""The one entry point that solves SDEs: `solve_sde`, over torchsde, with validation, seeding and statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torchsde
from torch import Tensor, nn

from nde_lab.errors import SolverError
from nde_lab.solvers.brownian import GridBrownian, interval_brownian, make_grid
from nde_lab.solvers.registry import check_choice

__all__ = [
    "NOISE_TYPES",
    "SDE_METHODS",
    "SDE_TYPES",
    "SDEMethod",
    "SDEMethodInfo",
    "SDESolution",
    "SDESolverOptions",
    "SDESolverStats",
    "solve_sde",
    "valid_methods",
]

SDEMethod = Literal["euler", "milstein", "srk", "midpoint", "heun", "euler_heun", "reversible_heun", "log_ode"]
NoiseType = Literal["diagonal", "scalar", "additive", "general"]
SDEType = Literal["ito", "stratonovich"]
NOISE_TYPES: tuple[str, ...] = ("diagonal", "scalar", "additive", "general")
SDE_TYPES: tuple[str, ...] = ("ito", "stratonovich")
_ALL = frozenset(NOISE_TYPES)
_NOT_GENERAL = frozenset({"diagonal", "scalar", "additive"})


@dataclass(frozen=True)
class SDEMethodInfo:
    """What an SDE method declares about itself (torchsde's own tables).

    Attributes:
        sde_types: calculi the method integrates ('ito' and/or 'stratonovich').
        noise_types: noise types it supports.
        strong_order: strong order for diagonal/scalar noise (additive noise may be higher).
        levy_area: the Levy-area approximation it needs from the Brownian motion ('none' if none).
        drift_evals: drift evaluations per step in torchsde's implementation (counted against a
            counting drift: tests/test_sde_solver.py); `drift_evals_additive` where additive noise
            takes another scheme (srk: SRA1's 3 stages instead of SRI2's 10).
        extra_evals: evaluations outside the steps (reversible Heun evaluates the drift once at t0).
    """

    sde_types: frozenset[str]
    noise_types: frozenset[str]
    strong_order: float
    levy_area: str = "none"
    drift_evals: int = 1
    drift_evals_additive: int | None = None
    extra_evals: int = 0

    def evals_per_step(self, noise_type: str) -> int:
        """Drift evaluations of one step for this noise type."""
        return self.drift_evals_additive if noise_type == "additive" and self.drift_evals_additive else self.drift_evals


#: Methods `solve_sde` accepts and what each supports.
SDE_METHODS: dict[str, SDEMethodInfo] = {
    "euler": SDEMethodInfo(frozenset({"ito"}), _ALL, 0.5),
    "milstein": SDEMethodInfo(frozenset({"ito", "stratonovich"}), _NOT_GENERAL, 1.0),
    "srk": SDEMethodInfo(frozenset({"ito"}), _NOT_GENERAL, 1.5, "space-time", drift_evals=10, drift_evals_additive=3),
    "midpoint": SDEMethodInfo(frozenset({"stratonovich"}), _ALL, 1.0, drift_evals=2),
    "heun": SDEMethodInfo(frozenset({"stratonovich"}), _ALL, 1.0, drift_evals=2),
    "euler_heun": SDEMethodInfo(frozenset({"stratonovich"}), _ALL, 1.0),
    "reversible_heun": SDEMethodInfo(frozenset({"stratonovich"}), _ALL, 1.0, extra_evals=1),
    "log_ode": SDEMethodInfo(frozenset({"stratonovich"}), _ALL, 1.0, "foster", drift_evals=2),
}


def valid_methods(noise_type: str, sde_type: str) -> list[str]:
    """The methods valid for an SDE of this noise type and calculus."""
    return [m for m, i in SDE_METHODS.items() if noise_type in i.noise_types and sde_type in i.sde_types]


@dataclass
class SDESolverOptions:
    """How to solve an SDE; every field is a recipe key under `solver:`.

    Args:
        method: integration method (see `SDE_METHODS`); None picks 'euler' (Ito) or 'midpoint'
            (Stratonovich).
        dt: the fixed step, or the first step of adaptive stepping, in the series' time units.
        adaptive: choose steps from an error estimate (step doubling); Brownian motion then comes
            from a seeded `BrownianInterval` (slower).
        rtol, atol, dt_min: tolerances and minimum step of adaptive stepping.
        adjoint: back-propagate through the stochastic adjoint (Li et al. 2020), O(1) memory in time.
        max_num_steps: step budget; exhausting it raises `SolverError`.
        on_nonfinite: 'raise' raises `SolverError` when a path turns non-finite; 'mask' keeps the
            finite paths, marks the others in `SDESolution.finite` and counts them in the statistics
            (fixed steps only: adaptive steps are shared across the batch and always raise).
    """

    method: SDEMethod | None = None
    dt: float = 1e-2
    adaptive: bool = False
    rtol: float = 1e-4
    atol: float = 1e-5
    dt_min: float = 1e-6
    adjoint: bool = False
    max_num_steps: int = 1_000_000
    on_nonfinite: Literal["raise", "mask"] = "raise"

    def __post_init__(self) -> None:
        if self.method is not None:
            check_choice("solver.method", self.method, SDE_METHODS)
        check_choice("solver.on_nonfinite", self.on_nonfinite, ["raise", "mask"])
        for name in ("dt", "rtol", "atol", "dt_min"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
                raise SolverError(f"solver.{name} must be a positive finite number, got {value!r}.")
        if self.max_num_steps < 1:
            raise SolverError(f"solver.max_num_steps must be >= 1, got {self.max_num_steps!r}.")


@dataclass
class SDESolverStats:
    """Work done by one solve, and what was masked."""

    method: str
    seed: int | None = None
    nfe_drift: int = 0
    nfe_diffusion: int = 0
    steps: int = 0
    masked_paths: int = 0
    status: Literal["success", "failed"] = "success"
    message: str = ""

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "method": self.method, "seed": -1 if self.seed is None else self.seed, "nfe_drift": self.nfe_drift,
            "nfe_diffusion": self.nfe_diffusion, "steps": self.steps, "masked_paths": self.masked_paths,
            "status": self.status,
        }


@dataclass
class SDESolution:
    """Solved paths.

    Attributes:
        t: output times, shape (T,).
        y: states, shape (T, batch, D) (time first, as torchsde returns it); masked paths are NaN.
        finite: which paths stayed finite, shape (batch,) bool.
        stats: evaluations, steps, masked paths, seed and status.
    """

    t: Tensor
    y: Tensor
    finite: Tensor
    stats: SDESolverStats = field(default_factory=lambda: SDESolverStats(method="?"))

    def valid_paths(self) -> Tensor:
        """The finite paths only, shape (T, n_valid, D): what may be stored."""
        return self.y[:, self.finite]


class _CountingSDE(nn.Module):
    """Presents `sde` to torchsde, counting drift/diffusion evaluations and enforcing the step budget."""

    def __init__(self, sde: nn.Module, max_calls: int, check_finite: bool, fail) -> None:
        super().__init__()
        self.fail = fail  # (what, t) -> SolverError: raised directly, so the adjoint's backward raises it too
        self.sde = sde
        self.noise_type, self.sde_type = sde.noise_type, sde.sde_type
        self.max_calls, self.check_finite = max_calls, check_finite
        self.nfe_f = self.nfe_g = 0
        self.last_t = float("nan")

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        self.nfe_f += 1
        if self.nfe_f > self.max_calls:
            self.last_t = float(t)
            raise self.fail("step budget exhausted", self.last_t)
        out = self.sde.f(t, y)
        if self.check_finite and not bool(torch.isfinite(out).all()):
            self.last_t = float(t)
            raise self.fail("non-finite drift", self.last_t)
        return out

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        self.nfe_g += 1
        return self.sde.g(t, y)


def _expected_diffusion_shape(noise_type: str, batch: int, dim: int, g_shape: tuple[int, ...]) -> str:
    if noise_type == "diagonal":
        return f"({batch}, {dim})"
    if noise_type == "scalar":
        return f"({batch}, {dim}, 1)"
    m = g_shape[-1] if len(g_shape) == 3 else "m"
    return f"({batch}, {dim}, {m}) with m the number of Brownian channels"


def _validate(sde: nn.Module, y0: Tensor, t: Tensor, method: str) -> int:
    """Check the SDE's declarations and shapes at t[0]; return the number of Brownian channels."""
    name = type(sde).__name__
    noise_type, sde_type = getattr(sde, "noise_type", None), getattr(sde, "sde_type", None)
    check_choice(f"{name}.noise_type", noise_type, list(NOISE_TYPES))
    check_choice(f"{name}.sde_type", sde_type, list(SDE_TYPES))
    valid = valid_methods(noise_type, sde_type)
    if method not in valid:
        raise SolverError(
            f"solver.method={method!r} is not valid for {name} (noise_type={noise_type!r}, "
            f"sde_type={sde_type!r}); must be one of {', '.join(map(repr, valid))}."
        )
    if not isinstance(t, Tensor) or t.ndim != 1 or t.numel() < 2:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise SolverError(f"t must be a 1-D tensor of at least 2 times, got shape {shape}.")
    if not (torch.is_floating_point(t) and torch.is_floating_point(y0)):
        raise SolverError(f"t and y0 must be floating point, got dtypes {t.dtype} and {y0.dtype}.")
    if not bool((t[1:] > t[:-1]).all()):
        raise SolverError("t must be strictly increasing; got repeated or unordered times.")
    if y0.ndim != 2:
        raise SolverError(
            f"y0 must have shape (batch, state) = (B, D), got {tuple(y0.shape)}; add a batch dimension "
            "with y0[None] or flatten extra batch dimensions."
        )
    if not bool(torch.isfinite(y0).all()):
        raise SolverError("the initial state y0 has non-finite entries.")
    batch, dim = y0.shape
    with torch.no_grad():
        f0, g0 = sde.f(t[0], y0), sde.g(t[0], y0)
    if tuple(f0.shape) != (batch, dim):
        raise SolverError(
            f"{name}.f (drift) must return shape (batch, state) = ({batch}, {dim}), got {tuple(f0.shape)}."
        )
    g_shape = tuple(g0.shape)
    ok = (
        g_shape == (batch, dim) if noise_type == "diagonal"
        else g_shape == (batch, dim, 1) if noise_type == "scalar"
        else len(g_shape) == 3 and g_shape[:2] == (batch, dim)
    )
    if not ok:
        raise SolverError(
            f"{name}.g (diffusion) with noise_type={noise_type!r} must return shape "
            f"{_expected_diffusion_shape(noise_type, batch, dim, g_shape)}, got {g_shape}; fix the diffusion "
            "module's output shape or declare the matching noise_type."
        )
    return dim if noise_type == "diagonal" else g_shape[-1]


def solve_sde(
    sde: nn.Module,
    y0: Tensor,
    t: Tensor,
    *,
    options: SDESolverOptions | None = None,
    seed: int | None = None,
    bm: object | None = None,
    throw: bool = True,
) -> SDESolution:
    """Solve dY = f(t, Y) dt + g(t, Y) dW from Y(t[0]) = y0 and return Y at every time of `t`.

    Main arguments:
        sde: module with `noise_type`, `sde_type`, drift `f(t, y) -> (B, D)` and diffusion
            `g(t, y)` of shape (B, D) for diagonal, (B, D, 1) for scalar, (B, D, m) for additive
            and general noise (see `nde_lab.dynamics.sde.SDE`).
        y0: initial states, shape (B, D).
        t: output times, shape (T,), strictly increasing; t[0] is the initial time.
        seed: seed of the Brownian motion; the same seed gives the same paths bit for bit on CPU.
            Required unless `bm` is given.

    Other arguments:
        options: method, step, adaptivity, adjoint, budget and non-finite policy.
        bm: a Brownian motion to use instead of a seeded one (e.g. a shared `GridBrownian`).
        throw: if False, a failed solve returns NaN paths with `stats.status == 'failed'`.

    Fixed steps without adjoint use `GridBrownian` (all increments in one `randn`, about the cost
    of a hand-written Euler-Maruyama loop); adaptive steps, adjoints and Levy-area methods use a
    `BrownianInterval` seeded by `seed`.

    Returns:
        SDESolution with y of shape (T, B, D).
    """
    options = options or SDESolverOptions()
    method = options.method or ("euler" if getattr(sde, "sde_type", None) == "ito" else "midpoint")
    m = _validate(sde, y0, t, method)
    info = SDE_METHODS[method]
    batch = y0.shape[0]
    if bm is None and seed is None:
        raise SolverError("solve_sde needs an explicit seed=... (or a Brownian motion bm=...) so paths can be regenerated.")
    t0, t1 = float(t[0]), float(t[-1])
    if not options.adaptive:
        n_steps = math.ceil((t1 - t0) / options.dt - 1e-9)
        if n_steps > options.max_num_steps:
            raise SolverError(
                f"solver.dt={options.dt:g} over [{t0:g}, {t1:g}] needs {n_steps} steps, more than "
                f"solver.max_num_steps={options.max_num_steps}; raise the budget or the step."
            )
    if bm is None:
        fast = not options.adaptive and not options.adjoint and info.levy_area == "none"
        if fast:
            bm = GridBrownian(t0, t1, dt=options.dt, size=(batch, m), seed=seed, dtype=y0.dtype, device=y0.device)
        else:
            bm = interval_brownian(t0, t1, size=(batch, m), seed=seed, levy_area_approximation=info.levy_area,
                                   dtype=y0.dtype, device=y0.device)
    per_step = info.evals_per_step(sde.noise_type)
    # the step budget in drift evaluations: an adaptive attempt is three steps of the method
    calls_per_step = (3 if options.adaptive else 2) * per_step
    counted = _CountingSDE(sde, max_calls=calls_per_step * options.max_num_steps + 4 + info.extra_evals,
                           check_finite=options.adaptive,
                           fail=lambda what, t_: _failure(options, method, what, t_))
    stats = SDESolverStats(method=method, seed=seed)
    # torchsde accumulates t + dt in the dtype of t: float32 drifts off the step grid at large t
    # (t ~ 1900 after a few hundred steps), so the solve runs on float64 times. Drift and diffusion
    # see a 0-d float64 t, which does not change the dtype of float32 results.
    t_solve = t.to(torch.float64) if not options.adjoint else t
    kwargs = dict(bm=bm, method=method, dt=options.dt, adaptive=options.adaptive, rtol=options.rtol,
                  atol=options.atol, dt_min=options.dt_min)
    try:
        try:
            if options.adjoint:
                params = tuple(p for p in sde.parameters() if p.requires_grad)
                y = torchsde.sdeint_adjoint(counted, y0, t_solve, adjoint_params=params, **kwargs)
            else:
                y = torchsde.sdeint(counted, y0, t_solve, **kwargs)
        except ValueError as err:  # torchsde's own contract checks
            raise SolverError(f"torchsde rejected the solve with method={method!r}: {err}") from None
        finite = torch.isfinite(y).all(dim=2).all(dim=0)
        n_bad = int((~finite).sum())
        if n_bad and options.on_nonfinite == "raise":
            first = int((~torch.isfinite(y).reshape(y.shape[0], -1).all(dim=1)).nonzero()[0, 0])
            raise _failure(options, method, f"{n_bad} of {batch} paths turned non-finite", float(t[first]))
    except SolverError as err:
        if throw:
            raise
        stats.status, stats.message = "failed", str(err)
        stats.nfe_drift, stats.nfe_diffusion = counted.nfe_f, counted.nfe_g
        nan = torch.full((t.shape[0], *y0.shape), float("nan"), dtype=y0.dtype, device=y0.device)
        return SDESolution(t=t, y=nan, finite=torch.zeros(batch, dtype=torch.bool), stats=stats)
    if n_bad:
        y = torch.where(finite[None, :, None], y, torch.full_like(y, float("nan")))
    stats.nfe_drift, stats.nfe_diffusion = counted.nfe_f, counted.nfe_g
    # adaptive: each attempted step is one full and two half steps of the method, after torchsde's one
    # shape-check evaluation (and the method's own extra ones); fixed: the grid's steps.
    stats.steps = ((counted.nfe_f - 1 - info.extra_evals) // (3 * per_step) if options.adaptive
                   else make_grid(t0, t1, options.dt).numel() - 1)
    stats.masked_paths = n_bad
    counted.nfe_f = counted.nfe_g = 0  # the adjoint's backward solve gets its own budget
    return SDESolution(t=t, y=y, finite=finite, stats=stats)


def _failure(options: SDESolverOptions, method: str, what: str, t_reached: float) -> SolverError:
    return SolverError(
        f"SDE solve failed ({what}) with method={method!r} at t={t_reached:.6g} (dt={options.dt:g}, "
        f"adaptive={options.adaptive}, max_num_steps={options.max_num_steps}); hint: the drift or "
        "diffusion may blow up: reduce solver.dt, check the model's scale and initial weights, lower the "
        "learning rate, or set solver.on_nonfinite='mask' to drop such paths and count them."
    )
