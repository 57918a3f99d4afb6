"""Flow layer specs for recipes: each builds one Pyro transform (coupling, autoregressive, permutation)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import partial
from typing import Literal

import pyro.distributions.transforms as T
import torch
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.nn import AutoRegressiveNN, ConditionalAutoRegressiveNN, ConditionalDenseNN, DenseNN
from torch import nn
from torch.distributions import Transform

from nde_lab.errors import RecipeError

__all__ = [
    "AffineAutoregressive",
    "AffineCoupling",
    "FlowBlock",
    "FlowLayer",
    "Permute",
    "SplineAutoregressive",
    "SplineCoupling",
]

Direction = Literal["maf", "iaf"]


class FlowBlock(nn.Module):
    """One built layer: owns the parameters and hands out a Pyro transform z -> x for a context."""

    def __init__(self, module: nn.Module, *, conditional: bool, invert: bool, name: str) -> None:
        super().__init__()
        self.module = module
        self.conditional = conditional
        self.invert = invert
        self.name = name

    def transform(self, context: torch.Tensor | None) -> Transform:
        # Pyro's transforms cache their last (x, y) pair and answer a repeated input from the cache,
        # which is stale once parameters change (and holds a freed graph): start every call afresh.
        for sub in self.module.modules():
            if isinstance(sub, Transform) and getattr(sub, "_cache_size", 0):
                sub._cached_x_y = None, None
        t = self.module.condition(context) if self.conditional else self.module
        return t.inv if self.invert else t


class _PermuteBlock(nn.Module):
    """A fixed permutation, kept as a buffer so it saves and reloads with the state dict."""

    def __init__(self, permutation: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("permutation", permutation)
        self.name = "permute"

    def transform(self, context: torch.Tensor | None) -> Transform:
        return T.Permute(self.permutation)


class FlowLayer(ABC):
    """A recipe entry of a flow stack; `build(dim, context_dim)` returns the module that holds it."""

    #: whether a conditional version exists (a context then feeds the layer's networks)
    supports_context: bool = True

    @abstractmethod
    def build(self, dim: int, context_dim: int) -> nn.Module:
        """Return a `FlowBlock` (or permutation block) for data of `dim` and context of `context_dim`."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


def _check_hidden(hidden: list[int], layer: str) -> list[int]:
    if not hidden or any(int(h) < 1 for h in hidden):
        raise RecipeError(f"{layer}.hidden must be a non-empty list of positive widths, got {hidden!r}.")
    return [int(h) for h in hidden]


def _check_coupling_dim(dim: int, layer: str) -> None:
    if dim < 2:
        raise RecipeError(f"{layer} splits the data in two and needs dim >= 2, got dim={dim}; use an autoregressive layer.")


class AffineCoupling(FlowLayer):
    """Affine coupling (RealNVP, Dinh et al. 2017): x2 -> x2 * exp(s(x1)) + t(x1).

    Args:
        hidden: widths of the conditioner network's hidden layers.
        split: number of leading coordinates x1 kept fixed (default dim // 2).
    """

    def __init__(self, *, hidden: list[int] = [64, 64], split: int | None = None) -> None:  # noqa: B006
        self.hidden = _check_hidden(hidden, "AffineCoupling")
        self.split = split

    def build(self, dim: int, context_dim: int) -> nn.Module:
        _check_coupling_dim(dim, "AffineCoupling")
        split = self.split or dim // 2
        if context_dim:
            module = T.conditional_affine_coupling(dim, context_dim, hidden_dims=self.hidden, split_dim=split)
        else:
            module = T.affine_coupling(dim, hidden_dims=self.hidden, split_dim=split)
        return FlowBlock(module, conditional=bool(context_dim), invert=False, name="affine_coupling")


class _ConditionalSplineCoupling(ConditionalTransformModule):
    """Pyro lacks a conditional spline coupling: this one conditions its hypernet on the context."""

    def __init__(self, dim: int, split: int, context_dim: int, hidden: list[int], bins: int, bound: float) -> None:
        super().__init__()
        self.dim, self.split, self.bins, self.bound = dim, split, bins, bound
        self.lower_spline = T.Spline(split, bins, bound, "quadratic")
        rest = dim - split
        self.nn = ConditionalDenseNN(split, context_dim, hidden, param_dims=[rest * bins, rest * bins, rest * (bins - 1)])

    def condition(self, context: torch.Tensor) -> T.SplineCoupling:
        coupling = T.SplineCoupling(
            self.dim, self.split, partial(self.nn, context=context), self.bins, self.bound, order="quadratic"
        )
        coupling.lower_spline = self.lower_spline  # share the unconditional half's parameters
        return coupling


class SplineCoupling(FlowLayer):
    """Rational-quadratic spline coupling (neural spline flow, Durkan et al. 2019).

    Identity outside [-bound, bound] in every coordinate.

    Args:
        hidden: widths of the conditioner network's hidden layers.
        bins: number of spline segments.
        bound: half-width of the spline's box.
        split: number of leading coordinates that condition the rest (default dim // 2).
    """

    def __init__(self, *, hidden: list[int] = [64, 64], bins: int = 8, bound: float = 4.0,  # noqa: B006
                 split: int | None = None) -> None:
        self.hidden = _check_hidden(hidden, "SplineCoupling")
        if bins < 2 or not bound > 0:
            raise RecipeError(f"SplineCoupling needs bins >= 2 and bound > 0, got bins={bins}, bound={bound}.")
        self.bins, self.bound, self.split = bins, float(bound), split

    def build(self, dim: int, context_dim: int) -> nn.Module:
        _check_coupling_dim(dim, "SplineCoupling")
        split = self.split or dim // 2
        if context_dim:
            module = _ConditionalSplineCoupling(dim, split, context_dim, self.hidden, self.bins, self.bound)
        else:
            rest = dim - split
            net = DenseNN(split, self.hidden, param_dims=[rest * self.bins, rest * self.bins, rest * (self.bins - 1)])
            module = T.SplineCoupling(dim, split, net, self.bins, self.bound, order="quadratic")
        return FlowBlock(module, conditional=bool(context_dim), invert=False, name="spline_coupling")


def _check_direction(direction: str, layer: str) -> None:
    if direction not in ("maf", "iaf"):
        raise RecipeError(
            f"{layer}.direction={direction!r} is not valid; must be one of 'maf' (fast density, "
            "sequential sampling) or 'iaf' (fast sampling, sequential density)."
        )


class AffineAutoregressive(FlowLayer):
    """Affine autoregressive layer: MAF (Papamakarios et al. 2017) or IAF (Kingma et al. 2016).

    Args:
        hidden: widths of the MADE network's hidden layers.
        direction: "maf" evaluates densities in one pass (sampling takes D passes); "iaf" samples
            in one pass (density of new points takes D passes).
    """

    def __init__(self, *, hidden: list[int] = [64, 64], direction: Direction = "maf") -> None:  # noqa: B006
        self.hidden = _check_hidden(hidden, "AffineAutoregressive")
        _check_direction(direction, "AffineAutoregressive")
        self.direction = direction

    def build(self, dim: int, context_dim: int) -> nn.Module:
        if context_dim:
            module = T.conditional_affine_autoregressive(dim, context_dim, hidden_dims=self.hidden)
        else:
            module = T.affine_autoregressive(dim, hidden_dims=self.hidden)
        # Pyro's autoregressive transforms are IAF-shaped (one-pass forward); MAF is their inverse.
        return FlowBlock(module, conditional=bool(context_dim), invert=self.direction == "maf",
                         name=f"affine_{self.direction}")


class SplineAutoregressive(FlowLayer):
    """Rational-quadratic spline autoregressive layer (Durkan et al. 2019), MAF or IAF direction.

    Args:
        hidden: widths of the MADE network's hidden layers.
        bins: number of spline segments; bound: half-width of the spline's box.
        direction: "maf" or "iaf" (see `AffineAutoregressive`).
    """

    def __init__(self, *, hidden: list[int] = [64, 64], bins: int = 8, bound: float = 4.0,  # noqa: B006
                 direction: Direction = "maf") -> None:
        self.hidden = _check_hidden(hidden, "SplineAutoregressive")
        _check_direction(direction, "SplineAutoregressive")
        if bins < 2 or not bound > 0:
            raise RecipeError(f"SplineAutoregressive needs bins >= 2 and bound > 0, got bins={bins}, bound={bound}.")
        self.bins, self.bound, self.direction = bins, float(bound), direction

    def build(self, dim: int, context_dim: int) -> nn.Module:
        # Pyro's helpers build linear-order splines; the quadratic (RQ) order needs 3 parameter sets.
        k = self.bins
        kw = dict(count_bins=k, bound=self.bound, order="quadratic")
        if context_dim:
            arn = ConditionalAutoRegressiveNN(dim, context_dim, self.hidden, param_dims=[k, k, k - 1])
            module = T.ConditionalSplineAutoregressive(dim, arn, **kw)
        else:
            arn = AutoRegressiveNN(dim, self.hidden, param_dims=[k, k, k - 1])
            module = T.SplineAutoregressive(dim, arn, **kw)
        return FlowBlock(module, conditional=bool(context_dim), invert=self.direction == "maf",
                         name=f"spline_{self.direction}")


class Permute(FlowLayer):
    """A fixed permutation of the coordinates (no parameters, log|det J| = 0).

    Args:
        kind: "reverse" reverses the coordinates; "random" draws a permutation from `seed`.
        seed: seed of the random permutation.
    """

    def __init__(self, *, kind: Literal["reverse", "random"] = "reverse", seed: int = 0) -> None:
        if kind not in ("reverse", "random"):
            raise RecipeError(f"Permute.kind={kind!r} is not valid; must be one of 'reverse', 'random'.")
        self.kind, self.seed = kind, seed

    def build(self, dim: int, context_dim: int) -> nn.Module:
        if self.kind == "reverse":
            perm = torch.arange(dim - 1, -1, -1)
        else:
            perm = torch.randperm(dim, generator=torch.Generator().manual_seed(self.seed))
        return _PermuteBlock(perm)
