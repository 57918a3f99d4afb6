"""Curvature of the training loss: Hessian-vector products, top eigenvalues (Lanczos), trace (Hutchinson),
spectral density (stochastic Lanczos quadrature), each with its error.

References: Pearlmutter (1994) for exact HVPs; Lanczos via ARPACK (`scipy.sparse.linalg.eigsh` on a
`LinearOperator`); Hutchinson (1989); Ghorbani, Krishnan & Xiao (2019) and Ubaru, Chen & Saad (2017)
for stochastic Lanczos quadrature.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import xarray as xr
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import Tensor, nn
from torch.func import functional_call

from nde_lab.theory._common import flat_params, resolve_network, unflatten

__all__ = ["HessianOperator", "half_mse", "hessian_spectrum", "hutchinson_trace", "lanczos_top", "sharpness",
           "slq"]


def half_mse(predicted: Tensor, target: Tensor) -> Tensor:
    """0.5 * mean over points of |f(x) - y|^2 (the lab's regression loss)."""
    return 0.5 * ((predicted - target) ** 2).sum(-1).mean()


class HessianOperator(LinearOperator):
    """The Hessian of L(theta) = loss(net_theta(x), y) at the network's current parameters, as a
    symmetric scipy `LinearOperator` on float64 vectors.

    `matvec` is an exact HVP (Pearlmutter 1994) by double backward: the gradient graph is built once
    (create_graph) and every product is one more backward pass through it.
    """

    def __init__(self, net: nn.Module, x: Tensor, y: Tensor,
                 loss: Callable[[Tensor, Tensor], Tensor] = half_mse) -> None:
        self.params = flat_params(net)
        self.theta = torch.cat([p.reshape(-1) for p in self.params.values()]).clone().requires_grad_(True)
        self.dtype_torch = self.theta.dtype

        def objective(theta: Tensor) -> Tensor:
            return loss(functional_call(net, unflatten(theta, self.params), (x,)), y)

        self.objective = objective
        with torch.enable_grad():
            self.value = objective(self.theta)
            (self._gradient,) = torch.autograd.grad(self.value, self.theta, create_graph=True)
        self.n_matvec = 0
        super().__init__(dtype=np.float64, shape=(self.theta.numel(), self.theta.numel()))

    def hvp(self, v: Tensor) -> Tensor:
        """H v for a flat vector v (n_params,)."""
        self.n_matvec += 1
        with torch.enable_grad():
            (out,) = torch.autograd.grad(self._gradient, self.theta, v.to(self.dtype_torch), retain_graph=True)
        return out

    def _matvec(self, v: np.ndarray) -> np.ndarray:
        return self.hvp(torch.from_numpy(np.ascontiguousarray(v).reshape(-1))).double().numpy()

    def _rmatvec(self, v: np.ndarray) -> np.ndarray:
        return self._matvec(v)

    def dense(self) -> np.ndarray:
        """The full Hessian (n, n) from n HVPs (small networks only)."""
        return np.stack([self._matvec(e) for e in np.eye(self.shape[0])], axis=1)


def lanczos_top(op: LinearOperator, k: int = 5, *, tol: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The k largest (algebraic) eigenvalues, descending, and their residuals ||H v - lambda v|| (unit v).

    NaN for a Hessian taken where the loss or its gradient is not finite (a diverged run).
    """
    n = op.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for a Hessian of size {n}, got {k}.")
    if isinstance(op, HessianOperator) and not bool(torch.isfinite(op._gradient).all()):
        return np.full(k, np.nan), np.full(k, np.nan)  # diverged training: no curvature to report
    v0 = np.random.default_rng(seed).standard_normal(n)
    values, vectors = eigsh(op, k=k, which="LA", tol=tol, v0=v0)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order]
    residual = np.array([np.linalg.norm(op @ vectors[:, i] - values[i] * vectors[:, i]) for i in range(k)])
    return values, residual


def sharpness(net: nn.Module, x: Tensor, y: Tensor, *, loss: Callable[[Tensor, Tensor], Tensor] = half_mse,
              tol: float = 1e-4) -> float:
    """The top Hessian eigenvalue of the loss at the current parameters (Cohen et al. 2021's sharpness)."""
    return float(lanczos_top(HessianOperator(net, x, y, loss), 1, tol=tol)[0][0])


def hutchinson_trace(op: LinearOperator, n_probes: int = 100, *, seed: int = 0) -> tuple[float, float]:
    """tr(H) = E[z^T H z] with Rademacher z; returns (estimate, Monte Carlo standard error)."""
    rng = np.random.default_rng(seed)
    samples = np.array([z @ (op @ z) for z in rng.choice([-1.0, 1.0], size=(n_probes, op.shape[0]))])
    return float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(n_probes))


def _lanczos(op: LinearOperator, v: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Lanczos with full reorthogonalisation from unit v; returns (Ritz values, squared first components)."""
    n = op.shape[0]
    steps = min(steps, n)
    basis = np.zeros((steps, n))
    alpha, beta = np.zeros(steps), np.zeros(steps)
    basis[0] = v / np.linalg.norm(v)
    m = steps
    for j in range(steps):
        w = op @ basis[j]
        alpha[j] = w @ basis[j]
        w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        if j + 1 < steps:
            beta[j] = np.linalg.norm(w)
            if beta[j] < 1e-12:
                m = j + 1
                break
            basis[j + 1] = w / beta[j]
    t = np.diag(alpha[:m]) + np.diag(beta[: m - 1], 1) + np.diag(beta[: m - 1], -1)
    nodes, vecs = np.linalg.eigh(t)
    return nodes, vecs[0] ** 2


def slq(op: LinearOperator, *, n_probes: int = 10, steps: int = 30, seed: int = 0,
        grid: np.ndarray | None = None, broadening: float | None = None) -> xr.Dataset:
    """Spectral density of H by stochastic Lanczos quadrature.

    Each Rademacher probe z/|z| gives a Gauss quadrature (nodes theta_j, weights w_j, sum w_j = 1) of the
    spectral measure (1/n) sum_i delta(lambda - lambda_i); the density is their average smoothed by a
    Gaussian of width `broadening`. The measure's mean sum_j w_j theta_j is z^T H z / |z|^2, an unbiased
    estimate of tr(H)/n whose standard error is the probes' spread / sqrt(n_probes).

    Returns a Dataset with `nodes`, `weights` (probe, node), `density` (eigenvalue) and attrs
    `mean`, `mean_mcse`, `integral` (of the density over the grid).
    """
    rng = np.random.default_rng(seed)
    n = op.shape[0]
    steps = min(steps, n)
    nodes = np.full((n_probes, steps), np.nan)
    weights = np.zeros((n_probes, steps))
    for p in range(n_probes):
        theta, w = _lanczos(op, rng.choice([-1.0, 1.0], size=n), steps)
        nodes[p, : len(theta)], weights[p, : len(theta)] = theta, w
    lo, hi = np.nanmin(nodes), np.nanmax(nodes)
    width = broadening or max(hi - lo, 1e-12) / 100
    if grid is None:
        grid = np.linspace(lo - 5 * width, hi + 5 * width, 1001)
    finite = np.nan_to_num(nodes)
    kernel = np.exp(-0.5 * ((grid[None, None, :] - finite[..., None]) / width) ** 2) / (width * np.sqrt(2 * np.pi))
    density = (weights[..., None] * kernel).sum(1).mean(0)
    means = (weights * finite).sum(1)
    ds = xr.Dataset(
        {"nodes": (("probe", "node"), nodes), "weights": (("probe", "node"), weights),
         "density": ("eigenvalue", density)},
        coords={"eigenvalue": grid},
    )
    ds.attrs.update(mean=float(means.mean()), mean_mcse=float(means.std(ddof=1) / np.sqrt(n_probes)) if n_probes > 1
                    else float("nan"), integral=float(np.trapezoid(density, grid)), broadening=float(width),
                    description="spectral density of the loss Hessian by stochastic Lanczos quadrature")
    return ds


def hessian_spectrum(obj: Any, x: Tensor | None = None, y: Tensor | None = None, *, k: int = 5, n_probes: int = 10,
                     slq_steps: int = 30, hutchinson_probes: int = 50, zero_tol: float = 1e-6,
                     module: str | None = None, loss: Callable[[Tensor, Tensor], Tensor] = half_mse,
                     seed: int = 0) -> xr.Dataset:
    """Top-k eigenvalues (Lanczos, with residuals), trace (Hutchinson, with its error) and SLQ density of
    the training-loss Hessian of a network (module, task or opened Run) on data (x, y).

    Without x, y the task's DataModule training set is used (a Run's recipe rebuilds it). For networks
    with at most 3000 parameters also `n_near_zero`: eigenvalues with |lambda| <= zero_tol * lambda_max
    of the dense Hessian.
    """
    if x is None or y is None:
        x, y = _training_set(obj)
    net = resolve_network(obj, module)
    op = HessianOperator(net, x, y, loss)
    top, residual = lanczos_top(op, min(k, op.shape[0] - 1), seed=seed)
    trace, trace_err = hutchinson_trace(op, hutchinson_probes, seed=seed)
    ds = slq(op, n_probes=n_probes, steps=slq_steps, seed=seed)
    ds["top_eigenvalues"] = ("eigen_index", top)
    ds["top_residual"] = ("eigen_index", residual)
    ds = ds.assign_coords(eigen_index=np.arange(len(top)))
    ds.attrs.update(trace=trace, trace_mcse=trace_err, n_parameters=int(op.shape[0]))
    if op.shape[0] <= 3000:
        eig = np.linalg.eigvalsh(op.dense())
        ds.attrs["n_near_zero"] = int(np.sum(np.abs(eig) <= zero_tol * max(eig.max(), 1e-300)))
    return ds


def _training_set(obj: Any) -> tuple[Tensor, Tensor]:
    from nde_lab.theory._common import training_set

    return training_set(obj)
