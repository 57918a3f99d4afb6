"""Empirical neural tangent kernel Theta(x, x') = J(x) J(x')^T of any network, and of an ODE flow map.

Two `torch.func` forms as in PyTorch's NTK tutorial: Jacobian contraction (vmap of jacrev) and
NTK-vector products (vjp then jvp); an autograd row loop for functions that `vmap` cannot trace
(an ODE solve). Jacot, Gabriel & Hongler (2018), "Neural tangent kernel".
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import xarray as xr
from torch import Tensor, nn
from torch.func import jacrev, jvp, vjp, vmap

from nde_lab.theory._common import as_function, flat_params, lr_factors, resolve_network

__all__ = ["empirical_ntk", "flow_map_ntk", "kernel_dataset", "ntk", "relative_drift"]


def empirical_ntk(net: nn.Module, x1: Tensor, x2: Tensor | None = None, *,
                  method: Literal["jacobian", "ntk_vps"] = "jacobian", time: float = 0.0,
                  lr_weighted: bool = False) -> Tensor:
    """Theta[n, m, a, b] = sum_p d f_a(x1_n)/d p  d f_b(x2_m)/d p, shape (N1, N2, O, O).

    Args:
        net: any module mapping a batch (B, d) to (B, O) (a `VectorField` is taken at time `time`).
        x1, x2: inputs (N1, d), (N2, d); x2 defaults to x1.
        method: "jacobian" (vmap over jacrev, then contract) or "ntk_vps" (vjp/jvp products).
        lr_weighted: weight each parameter by its parametrisation's learning-rate factor c_p,
            Theta = sum_p c_p J_p J_p^T: the kernel that drives function-space gradient descent
            (needed under muP/mean-field, whose per-layer rates differ).
    """
    x2 = x1 if x2 is None else x2
    fn = as_function(net, time=time)
    params = flat_params(net)
    factors = lr_factors(net) if lr_weighted else dict.fromkeys(params, 1.0)
    if method == "jacobian":
        j1 = vmap(jacrev(fn), (None, 0))(params, x1)
        j2 = j1 if x2 is x1 else vmap(jacrev(fn), (None, 0))(params, x2)
        return sum(factors[k] * torch.einsum("naf,mbf->nmab", j1[k].flatten(2), j2[k].flatten(2)) for k in params)
    if method != "ntk_vps":
        raise ValueError(f"method must be 'jacobian' or 'ntk_vps', got {method!r}.")

    def one_pair(a: Tensor, b: Tensor) -> Tensor:
        out, vjp_fn = vjp(lambda p: fn(p, a), params)

        def column(vec: Tensor) -> Tensor:
            (tangent,) = vjp_fn(vec)
            tangent = {k: factors[k] * t for k, t in tangent.items()}
            return jvp(lambda p: fn(p, b), (params,), (tangent,))[1]

        return vmap(column)(torch.eye(out.numel(), dtype=out.dtype))

    return vmap(vmap(one_pair, (None, 0)), (0, None))(x1, x2)


def _jacobian_rows(outputs: Tensor, params: list[Tensor]) -> Tensor:
    """Explicit Jacobian (outputs.numel(), n_params) by one autograd pass per output coordinate."""
    flat = outputs.reshape(-1)
    rows = []
    for i in range(flat.numel()):
        grads = torch.autograd.grad(flat[i], params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params, strict=True)]))
    return torch.stack(rows)


def flow_map_ntk(field: nn.Module, y0: Tensor, horizon: float, *, options: Any = None) -> Tensor:
    """NTK of the flow map y0 -> y(horizon) of dy/dt = f(t, y), shape (N, N, D, D).

    Solved with `nde_lab.solvers.solve_ode` (default fixed-step rk4 with 20 steps) and
    differentiated by autograd through the solver, one pass per output coordinate.
    """
    from nde_lab.solvers import ODESolverOptions, solve_ode

    options = options or ODESolverOptions(method="rk4", step_size=horizon / 20)
    params = [p for p in field.parameters() if p.requires_grad]
    t = torch.tensor([0.0, horizon], dtype=y0.dtype)
    with torch.enable_grad():
        end = solve_ode(field, y0, t, options).y[-1]  # (N, D)
        jac = _jacobian_rows(end, params)  # (N*D, P)
    n, d = end.shape
    return (jac @ jac.T).reshape(n, d, n, d).permute(0, 2, 1, 3).detach()


def kernel_dataset(kernel: Tensor, *, name: str = "ntk") -> xr.Dataset:
    """A kernel (N, N, O, O) as a Dataset: `kernel` (point, point_other, output, output_other),
    `eigenvalues` (eigen_index, descending) of the (N*O, N*O) matrix, and its trace."""
    k = kernel.detach().double()
    n, _, o, _ = k.shape
    matrix = k.permute(0, 2, 1, 3).reshape(n * o, n * o)
    eig = torch.linalg.eigvalsh(0.5 * (matrix + matrix.T)).flip(0).numpy()
    ds = xr.Dataset(
        {"kernel": (("point", "point_other", "output", "output_other"), k.numpy()),
         "eigenvalues": ("eigen_index", eig)},
        coords={"point": np.arange(n), "point_other": np.arange(n), "eigen_index": np.arange(n * o)},
    )
    ds.attrs.update(description=f"empirical {name}: Theta(x, x') = J(x) J(x')^T", trace=float(eig.sum()))
    return ds


def ntk(obj: Any, inputs: Tensor | np.ndarray, *, module: str | None = None,
        method: Literal["jacobian", "ntk_vps"] = "jacobian", lr_weighted: bool = False) -> xr.Dataset:
    """Empirical NTK of a network (an `nn.Module`, a task or an opened `Run`) at `inputs` (N, d)."""
    net = resolve_network(obj, module)
    dtype = next(net.parameters()).dtype
    x = torch.as_tensor(np.asarray(inputs), dtype=dtype)
    return kernel_dataset(empirical_ntk(net, x, method=method, lr_weighted=lr_weighted))


def relative_drift(kernel: Tensor | np.ndarray, reference: Tensor | np.ndarray) -> float:
    """||K - K_ref||_F / ||K_ref||_F."""
    k, r = np.asarray(kernel, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return float(np.linalg.norm(k - r) / np.linalg.norm(r))


