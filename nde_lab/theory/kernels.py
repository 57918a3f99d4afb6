"""Infinite-width NNGP and NTK kernels of fully connected ReLU and erf networks (closed-form recursions).

For an NTK-parametrised MLP h^{l+1} = sigma_w W^l phi(h^l) / sqrt(n_l) + sigma_b b^l with W, b ~ N(0, 1)
(`nde_lab.dynamics.MLP(parametrization="ntk")` has sigma_w = sigma_b = 1):

    Sigma^1(x, x') = sigma_w^2 x.x' / d + sigma_b^2,            Theta^1 = Sigma^1
    Sigma^{l+1}   = sigma_w^2 E[phi(u) phi(v)] + sigma_b^2,      (u, v) ~ N(0, Sigma^l restricted to x, x')
    Theta^{l+1}   = Theta^l sigma_w^2 E[phi'(u) phi'(v)] + Sigma^{l+1}

(Jacot et al. 2018; Lee et al. 2019; Arora et al. 2019). ReLU expectations are the arc-cosine kernels
of Cho & Saul (2009); erf's are Williams' (1997) arcsin formula. Returned as float64 numpy arrays.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["infinite_width_kernels"]


def _relu(s11: np.ndarray, s22: np.ndarray, s12: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norm = np.sqrt(s11 * s22)
    cos = np.clip(s12 / norm, -1.0, 1.0)
    theta = np.arccos(cos)
    e_phi = norm / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * cos)
    e_dphi = (np.pi - theta) / (2 * np.pi)
    return e_phi, e_dphi


def _erf(s11: np.ndarray, s22: np.ndarray, s12: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = 1 + 2 * s11, 1 + 2 * s22
    e_phi = 2 / np.pi * np.arcsin(np.clip(2 * s12 / np.sqrt(a * b), -1.0, 1.0))
    e_dphi = 4 / np.pi / np.sqrt(a * b - 4 * s12**2)
    return e_phi, e_dphi


_EXPECTATIONS = {"relu": _relu, "erf": _erf}


def infinite_width_kernels(
    x1: np.ndarray, x2: np.ndarray | None = None, *, depth: int = 1, activation: Literal["relu", "erf"] = "relu",
    sigma_w: float = 1.0, sigma_b: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(NNGP, NTK) of the network's scalar output between inputs x1 (N1, d) and x2 (N2, d): two (N1, N2) arrays.

    `depth` is the number of hidden layers (the lab's MLP `depth`).
    """
    if activation not in _EXPECTATIONS:
        raise ValueError(f"activation must be one of {sorted(_EXPECTATIONS)} for closed-form kernels, got {activation!r}.")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}.")
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = x1 if x2 is None else np.asarray(x2, dtype=np.float64)
    d = x1.shape[1]
    s12 = sigma_w**2 * x1 @ x2.T / d + sigma_b**2
    s11 = sigma_w**2 * np.sum(x1**2, 1) / d + sigma_b**2
    s22 = sigma_w**2 * np.sum(x2**2, 1) / d + sigma_b**2
    theta = s12.copy()
    expect = _EXPECTATIONS[activation]
    for _ in range(depth):
        e12, de12 = expect(s11[:, None], s22[None, :], s12)
        e11, _ = expect(s11, s11, s11)
        e22, _ = expect(s22, s22, s22)
        s12_new = sigma_w**2 * e12 + sigma_b**2
        theta = theta * sigma_w**2 * de12 + s12_new
        s12, s11, s22 = s12_new, sigma_w**2 * e11 + sigma_b**2, sigma_w**2 * e22 + sigma_b**2
    return s12, theta
