"""Seed robustness: function-space distances between independently trained networks, parameter distance after
permutation alignment of hidden units (weight matching, Ainsworth, Hayase & Srinivasa 2023), and the loss
barrier along the linear path between aligned solutions (Frankle et al. 2020; Entezari et al. 2022)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import numpy as np
import torch
import xarray as xr
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from nde_lab.theory.curvature import half_mse

__all__ = ["align_hidden_units", "function_distances", "interpolate", "loss_barrier", "parameter_distance",
           "seed_robustness"]


def function_distances(f: xr.DataArray, *, dim: str = "seed") -> xr.DataArray:
    """RMS distance sqrt(mean over the other dims of (f_s - f_s')^2) between every pair along `dim`:
    dims (seed, seed_other), symmetric with a zero diagonal."""
    other = f"{dim}_other"
    g = f.rename({dim: other})
    reduce = [d for d in f.dims if d != dim]
    out = np.sqrt(((f - g) ** 2).mean(reduce))
    out.name = "function_distance"
    return out.transpose(dim, other)


def _linears(net: nn.Module) -> tuple[nn.Linear, ...]:
    linears = getattr(net, "_linears", None)
    if linears is None:
        raise TypeError(f"alignment needs a lab MLP (nde_lab.dynamics.MLP / MLPVectorField), got {type(net).__name__}.")
    return linears


def _flat(net: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


def parameter_distance(a: nn.Module, b: nn.Module) -> float:
    """Euclidean distance between the two networks' parameter vectors."""
    return float((_flat(a) - _flat(b)).norm())


def align_hidden_units(reference: nn.Module, other: nn.Module) -> nn.Module:
    """A copy of `other` with each hidden layer's units permuted to match `reference` (the function is unchanged).

    Layer by layer, the permutation maximises sum_i <w_i^ref, w_pi(i)^other> over incoming weights (with the
    previous layer's permutation applied), biases and outgoing weights: one pass of Ainsworth et al.'s
    weight matching, each step an exact linear assignment (`scipy.optimize.linear_sum_assignment`).
    """
    aligned = copy.deepcopy(other)
    ref, oth = _linears(reference), _linears(aligned)
    with torch.no_grad():
        for layer in range(len(ref) - 1):
            w_r, w_o = ref[layer], oth[layer]
            similarity = (w_r.weight @ w_o.weight.T + torch.outer(w_r.bias, w_o.bias)
                          + ref[layer + 1].weight.T @ oth[layer + 1].weight)
            _, perm = linear_sum_assignment(similarity.double().cpu().numpy(), maximize=True)
            perm = torch.as_tensor(perm)
            w_o.weight.copy_(w_o.weight[perm])
            w_o.bias.copy_(w_o.bias[perm])
            oth[layer + 1].weight.copy_(oth[layer + 1].weight[:, perm])
    return aligned


def interpolate(a: nn.Module, b: nn.Module, alpha: float) -> nn.Module:
    """The network with parameters (1 - alpha) theta_a + alpha theta_b."""
    out = copy.deepcopy(a)
    with torch.no_grad():
        for p, pa, pb in zip(out.parameters(), a.parameters(), b.parameters(), strict=True):
            p.copy_((1 - alpha) * pa + alpha * pb)
    return out


def loss_barrier(a: nn.Module, b: nn.Module, x: Tensor, y: Tensor, *, n_alpha: int = 11,
                 loss: Callable[[Tensor, Tensor], Tensor] = half_mse) -> xr.Dataset:
    """Loss along theta(alpha) = (1 - alpha) theta_a + alpha theta_b, alpha on [0, 1] (endpoints included):
    `loss` (alpha), `excess` = loss - the linear interpolation of the end losses, attrs `barrier` = max excess
    (>= 0, since the endpoints have zero excess) and `argmax_alpha`."""
    alphas = np.linspace(0.0, 1.0, n_alpha)
    with torch.no_grad():
        losses = np.array([float(loss(interpolate(a, b, float(t))(x), y)) for t in alphas])
    excess = losses - ((1 - alphas) * losses[0] + alphas * losses[-1])
    ds = xr.Dataset({"loss": ("alpha", losses), "excess": ("alpha", excess)}, coords={"alpha": alphas})
    ds.attrs.update(barrier=float(excess.max()), argmax_alpha=float(alphas[int(excess.argmax())]))
    return ds


def seed_robustness(networks: Mapping[int, nn.Module], x: Tensor, y: Tensor, grid: Tensor, *,
                    n_alpha: int = 11) -> xr.Dataset:
    """Pairwise comparison of networks trained from different seeds (keys: the seeds).

    Returns, with dims (seed, seed_other): `function_distance` (RMS on `grid`), `parameter_distance`,
    `aligned_parameter_distance` (after `align_hidden_units`), `loss_barrier` (on x, y, between the
    reference and the aligned other; zero on the diagonal).
    """
    seeds = sorted(networks)
    n = len(seeds)
    with torch.no_grad():
        f = np.stack([networks[s](grid).double().cpu().numpy() for s in seeds])
    fdist = function_distances(xr.DataArray(f, dims=("seed", "point", "output"), coords={"seed": seeds}))
    plain, aligned, barrier = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    for i, si in enumerate(seeds):
        for j, sj in enumerate(seeds):
            if i == j:
                continue
            other = align_hidden_units(networks[si], networks[sj])
            plain[i, j] = parameter_distance(networks[si], networks[sj])
            aligned[i, j] = parameter_distance(networks[si], other)
            barrier[i, j] = loss_barrier(networks[si], other, x, y, n_alpha=n_alpha).attrs["barrier"]
    dims = ("seed", "seed_other")
    ds = xr.Dataset({"function_distance": fdist.drop_vars(list(fdist.coords)),
                     "parameter_distance": (dims, plain), "aligned_parameter_distance": (dims, aligned),
                     "loss_barrier": (dims, barrier)}, coords={"seed": seeds, "seed_other": seeds})
    ds.attrs["description"] = "seed robustness: function, parameter (plain and permutation-aligned) distances, barriers"
    return ds
