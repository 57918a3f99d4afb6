"""Is a failed explicit solve stiff? The spectral radius of df/dy at the failure point times the last step.

An explicit Runge-Kutta method is stable only while h * |lambda| stays inside a small region (about 3.3
for dopri5 on the negative real axis). When its step collapses or its budget runs out with
rho(df/dy) * h of order one, the step is held down by stability, not accuracy: the problem is stiff and
an implicit method (or per-draw stepping, which hands the stiff draws to one) is the fix. A blow-up or
a non-smooth field fails with rho * h well below one and gets no stiffness note.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["STIFF_RHO_H", "spectral_radius", "stiffness_note"]

#: rho(df/dy) * h above this at a failed explicit step reads as stiffness (stability-limited steps)
STIFF_RHO_H = 1.0


def spectral_radius(vector_field: nn.Module, t: Tensor, y: Tensor) -> Tensor:
    """max |eigenvalue| of df/dy per batch member: y (*batch, D) -> (*batch,).

    Rows of the Jacobian by one backward pass each (members are independent, so the gradient of the
    batch sum of f_i gives row i of every member's Jacobian at once)."""
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        f = vector_field(t.detach(), y)
        rows = [torch.autograd.grad(f[..., i].sum(), y, retain_graph=True, allow_unused=True)[0]
                for i in range(y.shape[-1])]
    rows = [torch.zeros_like(y) if r is None else r for r in rows]
    jac = torch.stack(rows, dim=-2).detach()  # (*batch, D, D)
    return torch.linalg.eigvals(jac.double()).abs().amax(dim=-1)


def stiffness_note(vector_field: nn.Module, last: tuple[Tensor, Tensor, Tensor] | None, t: Tensor) -> str:
    """A sentence for the failure message when the failed explicit solve looks stiff, else ""."""
    if last is None:
        return ""
    t0, y, dt = last
    try:
        rho = spectral_radius(vector_field, t0, y)
    except Exception:  # a field autograd cannot differentiate gets no diagnosis, not a new error
        return ""
    h = abs(float(dt))
    rho_h = rho * h
    worst = int(rho_h.reshape(-1).argmax())
    value = float(rho_h.reshape(-1)[worst])
    if not value >= STIFF_RHO_H:
        return ""
    member = f" (batch member {worst} of {rho_h.numel()})" if rho_h.numel() > 1 else ""
    steps = float(rho.reshape(-1)[worst]) * abs(float(t[-1] - t[0])) / 3.3
    return (
        f"The problem looks stiff{member}: the spectral radius of df/dy is {float(rho.reshape(-1)[worst]):.3g} and the "
        f"last step was h={h:.3g} (rho*h={value:.3g}, the stability limit of an explicit method), so an explicit "
        f"method needs ~{steps:.3g} steps over the span. Fix: `solver.method: lsoda` (or `bdf`, `radau`: implicit, "
        "scipy, exact gradients by forward sensitivities; MechanisticFields), or `solver.per_draw: true` to step "
        "each draw on its own and finish the stiff ones implicitly."
    )
