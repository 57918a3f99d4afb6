"""`CNF`: a continuous normalizing flow (FFJORD, Grathwohl et al. 2019) on the lab's ODE solver seam."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from torch import Tensor, nn

from nde_lab.errors import RecipeError
from nde_lab.flows.base import DensityModel, standard_normal_log_prob
from nde_lab.solvers import ODESolverOptions, SolverStats, solve_ode

__all__ = ["CNF", "CNFDynamics", "TraceMode"]

TraceMode = Literal["auto", "exact", "hutchinson"]
NoiseKind = Literal["rademacher", "gaussian"]


class CNFDynamics(nn.Module):
    """The augmented right-hand side d/dt [z, l, k, j] = [f, tr ∂f/∂z, ‖f‖², ‖εᵀ∂f/∂z‖²].

    The state is one tensor (n, D + 1 + r): z, the accumulated trace l, and r = 0 or 2 regulariser
    integrals (kinetic energy k and Jacobian Frobenius norm j, Finlay et al. 2020).

    Args:
        field: vector field f(t, z), z (n, D) -> (n, D).
        dim: D.
        exact: exact trace (D vector-Jacobian products) or Hutchinson's estimator εᵀ(∂f/∂z)ε.
        regularise: also integrate k and j.
    """

    def __init__(self, field: nn.Module, dim: int, *, exact: bool, regularise: bool) -> None:
        super().__init__()
        self.field = field
        self.dim = dim
        self.exact = exact
        self.regularise = regularise
        self.noise: Tensor | None = None  # fixed along one solve (Hutchinson's ε), set by CNF

    def forward(self, t: Tensor, s: Tensor) -> Tensor:
        grad_on = torch.is_grad_enabled()
        with torch.enable_grad():
            z = s[..., : self.dim]
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            f = self.field(t, z)
            parts = [f, self._trace(f, z, grad_on)]
            if self.regularise:
                e_jac = _vjp(f, z, self.noise, create_graph=grad_on)
                parts += [(f**2).sum(-1, keepdim=True), (e_jac**2).sum(-1, keepdim=True)]
            out = torch.cat(parts, dim=-1)
        return out if grad_on else out.detach()

    def _trace(self, f: Tensor, z: Tensor, create_graph: bool) -> Tensor:
        if not self.exact:
            e = self.noise
            return (_vjp(f, z, e, create_graph=create_graph) * e).sum(-1, keepdim=True)
        trace = torch.zeros_like(f[..., :1])
        for i in range(self.dim):
            g = _vjp(f[..., i].sum(), z, None, create_graph=create_graph)
            trace = trace + g[..., i : i + 1]
        return trace


def _vjp(f: Tensor, z: Tensor, v: Tensor | None, *, create_graph: bool) -> Tensor:
    (g,) = torch.autograd.grad(f, z, v, create_graph=create_graph, retain_graph=True, allow_unused=True)
    return torch.zeros_like(z) if g is None else g


class CNF(DensityModel):
    """FFJORD: x = z(T) with dz/dt = f(t, z), z(0) ~ N(0, I); log p(x) = log N(z(0)) − ∫₀ᵀ tr ∂f/∂z dt.

    log p(x) is computed by one solve from t = T back to 0 of the state augmented with the running
    trace integral (instantaneous change of variables, Chen et al. 2018).

    Main arguments:
        vector_field: f(t, z) on R^D (e.g. `nde_lab.dynamics.MLPVectorField(D, time_input=True)`),
            with no augmented coordinates.

    Other arguments:
        end_time: T, the flow's integration time.
        trace: "exact" (D backward passes per evaluation), "hutchinson" (one pass, unbiased,
            Hutchinson 1989) or "auto": exact when D <= `exact_max_dim`, else Hutchinson.
        noise: Hutchinson probe distribution: "rademacher" (lower variance) or "gaussian".
        exact_max_dim: the dimension up to which "auto" uses the exact trace.
        kinetic_energy: weight λ_K of ∫‖f‖² dt added to the training loss (Finlay et al. 2020).
        jacobian_frobenius: weight λ_J of ∫‖εᵀ∂f/∂z‖² dt (Hutchinson estimate of ∫‖∂f/∂z‖²_F dt).
        solver: method, tolerances, step and adjoint of every solve (`ODESolverOptions`); the
            adjoint (`solver.adjoint: true`) back-propagates in O(1) memory.
    """

    def __init__(
        self,
        vector_field: nn.Module,
        *,
        end_time: float = 1.0,
        trace: TraceMode = "auto",
        noise: NoiseKind = "rademacher",
        exact_max_dim: int = 8,
        kinetic_energy: float = 0.0,
        jacobian_frobenius: float = 0.0,
        solver: ODESolverOptions | None = None,
    ) -> None:
        super().__init__()
        dim = getattr(vector_field, "dim", None)
        if not isinstance(dim, int) or dim < 1:
            raise RecipeError(f"CNF.vector_field must declare an integer `dim` >= 1, got {dim!r}.")
        if getattr(vector_field, "augment_dim", 0):
            raise RecipeError(
                "CNF.vector_field has augment_dim > 0; a CNF's density lives on the data dimension, "
                "so set the vector field's augment_dim to 0."
            )
        if trace not in ("auto", "exact", "hutchinson"):
            raise RecipeError(f"CNF.trace={trace!r} is not valid; must be one of 'auto', 'exact', 'hutchinson'.")
        if noise not in ("rademacher", "gaussian"):
            raise RecipeError(f"CNF.noise={noise!r} is not valid; must be one of 'rademacher', 'gaussian'.")
        if not end_time > 0:
            raise RecipeError(f"CNF.end_time must be > 0, got {end_time}.")
        if kinetic_energy < 0 or jacobian_frobenius < 0:
            raise RecipeError(
                f"CNF regulariser weights must be >= 0, got kinetic_energy={kinetic_energy}, "
                f"jacobian_frobenius={jacobian_frobenius}."
            )
        self.field = vector_field
        self.dim = dim
        self.end_time = float(end_time)
        self.trace = trace
        self.noise = noise
        self.exact_max_dim = exact_max_dim
        self.kinetic_energy = float(kinetic_energy)
        self.jacobian_frobenius = float(jacobian_frobenius)
        self.solver = solver or ODESolverOptions(method="dopri5", rtol=1e-5, atol=1e-5)
        #: statistics of the last solve (function evaluations of its forward pass)
        self.last_stats: SolverStats | None = None

    @property
    def exact_trace(self) -> bool:
        """Whether log-densities use the exact trace (by option, or "auto" in low dimension)."""
        return self.trace == "exact" or (self.trace == "auto" and self.dim <= self.exact_max_dim)

    def _noise(self, like: Tensor, generator: torch.Generator | None) -> Tensor:
        # drawn on the CPU (where a seeded generator lives), then moved to the data's device
        if self.noise == "gaussian":
            return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)
        bits = torch.randint(0, 2, like.shape, generator=generator)
        return (bits.to(like.dtype) * 2 - 1).to(like.device)

    def log_prob_and_regularisers(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        regularise: bool = False,
        trace: TraceMode | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """log p(x) (n,) in nats and, if `regularise`, the integrals {"kinetic", "jacobian"} (n,).

        `trace` overrides the model's trace mode for this call; `generator` seeds Hutchinson's probes.
        """
        self.check_data(x, context)
        mode = trace or self.trace
        if mode not in ("auto", "exact", "hutchinson"):
            raise RecipeError(f"trace={mode!r} is not valid; must be one of 'auto', 'exact', 'hutchinson'.")
        exact = mode == "exact" or (mode == "auto" and self.dim <= self.exact_max_dim)
        dynamics = CNFDynamics(self.field, self.dim, exact=exact, regularise=regularise)
        if regularise or not exact:
            dynamics.noise = self._noise(x, generator)
        extra = 3 if regularise else 1
        s0 = torch.cat([x, x.new_zeros(x.shape[0], extra)], dim=-1)
        times = torch.tensor([self.end_time, 0.0], dtype=x.dtype, device=x.device)
        sol = solve_ode(dynamics, s0, times, self.solver)
        self.last_stats = sol.stats
        s_end = sol.y[-1]
        z0, delta = s_end[:, : self.dim], s_end[:, self.dim]
        logp = standard_normal_log_prob(z0) + delta
        regs: dict[str, Tensor] = {}
        if regularise:  # integrated from T to 0, so the integrals over [0, T] are the negatives
            regs = {"kinetic": -s_end[:, self.dim + 1], "jacobian": -s_end[:, self.dim + 2]}
        return logp, regs

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """log p(x) in nats, x (n, D) -> (n,), with the model's trace mode."""
        return self.log_prob_and_regularisers(x, context)[0]

    def loss(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean NLL plus λ_K·mean ∫‖f‖² + λ_J·mean ∫‖εᵀ∂f/∂z‖² (regularisers only when weighted)."""
        regularise = self.kinetic_energy > 0 or self.jacobian_frobenius > 0
        logp, regs = self.log_prob_and_regularisers(x, context, regularise=regularise)
        nll = -logp.mean()
        loss = nll
        logs = {"nll": nll.detach(), "nfe": torch.tensor(float(self.last_stats.nfe))}
        if regularise:
            kinetic, jacobian = regs["kinetic"].mean(), regs["jacobian"].mean()
            loss = loss + self.kinetic_energy * kinetic + self.jacobian_frobenius * jacobian
            logs |= {"kinetic_energy": kinetic.detach(), "jacobian_frobenius": jacobian.detach()}
        return loss, logs

    def sample(self, n: int, *, context: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n draws: z(0) ~ N(0, I) pushed forward to t = T; shape (n, D)."""
        self.check_context(context, n)
        p = next(self.field.parameters(), None)
        dtype = p.dtype if p is not None else torch.get_default_dtype()
        device = p.device if p is not None else torch.device("cpu")
        z = torch.randn(n, self.dim, generator=generator, dtype=dtype).to(device)
        times = torch.tensor([0.0, self.end_time], dtype=dtype, device=device)
        options = replace(self.solver, adjoint=False) if not torch.is_grad_enabled() else self.solver
        sol = solve_ode(self.field, z, times, options)
        self.last_stats = sol.stats
        return sol.y[-1]

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, end_time={self.end_time}, trace={self.trace!r}, noise={self.noise!r}, "
                f"kinetic_energy={self.kinetic_energy}, jacobian_frobenius={self.jacobian_frobenius}, "
                f"solver={self.solver.method!r}")
