"""`DiscreteFlow`: a stack of Pyro transforms over a Gaussian base, optionally conditioned on a context."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from nde_lab.errors import RecipeError
from nde_lab.flows.base import DensityModel
from nde_lab.flows.layers import FlowLayer

__all__ = ["DiscreteFlow"]


class DiscreteFlow(DensityModel):
    """x = T_k ∘ ... ∘ T_1 (z), z ~ N(loc, diag(scale²)); log p(x) by the change of variables.

    Main arguments:
        dim: data dimension D.
        layers: the stack, base side first: `AffineCoupling`, `SplineCoupling`,
            `AffineAutoregressive`, `SplineAutoregressive`, `Permute` (see `nde_lab.flows.layers`).

    Other arguments:
        context_dim: dimension C of a conditioning vector (0: unconditional). A conditional flow
            feeds the context to every layer's network (Pyro's conditional transforms).
        trainable_base: learn the base Gaussian's mean and log-scale (else standard normal).
    """

    def __init__(self, dim: int, layers: list[FlowLayer], *, context_dim: int = 0, trainable_base: bool = False) -> None:
        super().__init__()
        if dim < 1:
            raise RecipeError(f"DiscreteFlow.dim must be >= 1, got {dim}.")
        if context_dim < 0:
            raise RecipeError(f"DiscreteFlow.context_dim must be >= 0, got {context_dim}.")
        if not layers:
            raise RecipeError("DiscreteFlow.layers is empty; give at least one layer (e.g. SplineCoupling).")
        for i, layer in enumerate(layers):
            if not isinstance(layer, FlowLayer):
                raise RecipeError(
                    f"DiscreteFlow.layers[{i}] is a {type(layer).__name__}, not a flow layer; use one of "
                    "nde_lab.flows.AffineCoupling, SplineCoupling, AffineAutoregressive, SplineAutoregressive, Permute."
                )
        self.dim = dim
        self.context_dim = context_dim
        self.layer_specs = [repr(layer) for layer in layers]
        self.blocks = nn.ModuleList(layer.build(dim, context_dim) for layer in layers)
        self.base_loc = nn.Parameter(torch.zeros(dim), requires_grad=trainable_base)
        self.base_log_scale = nn.Parameter(torch.zeros(dim), requires_grad=trainable_base)

    # ---- the two directions ----------------------------------------------------------------------
    def _transforms(self, context: Tensor | None) -> list:
        return [block.transform(context) for block in self.blocks]

    def forward_and_log_det(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Base -> data: z (n, D) -> (x (n, D), log|det ∂x/∂z| (n,)); context already validated."""
        log_det = z.new_zeros(z.shape[:-1])
        for t in self._transforms(context):
            x = t(z)
            log_det = log_det + t.log_abs_det_jacobian(z, x)
            z = x
        return z, log_det

    def inverse_and_log_det(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data -> base: x (n, D) -> (z (n, D), log|det ∂z/∂x| (n,)); context already validated."""
        log_det = x.new_zeros(x.shape[:-1])
        for t in reversed(self._transforms(context)):
            z = t.inv(x)
            log_det = log_det - t.log_abs_det_jacobian(z, x)
            x = z
        return x, log_det

    def base_log_prob(self, z: Tensor) -> Tensor:
        """log N(z; loc, diag(scale²)) summed over coordinates: (n, D) -> (n,)."""
        u = (z - self.base_loc) * torch.exp(-self.base_log_scale)
        return (-0.5 * u**2 - self.base_log_scale - 0.5 * math.log(2 * math.pi)).sum(-1)

    # ---- DensityModel ----------------------------------------------------------------------------
    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """log p(x | context) in nats: x (n, D), context (n, C) or (C,) -> (n,)."""
        context = self.check_data(x, context)
        z, log_det = self.inverse_and_log_det(x, context)
        return self.base_log_prob(z) + log_det

    def sample(self, n: int, *, context: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n draws x ~ p(x | context), shape (n, D)."""
        context = self.check_context(context, n)
        # draw on the CPU (where a seeded generator lives), then move: the same draws on every device
        eps = torch.randn(n, self.dim, generator=generator, dtype=self.base_loc.dtype).to(self.base_loc.device)
        z = self.base_loc + torch.exp(self.base_log_scale) * eps
        return self.forward_and_log_det(z, context)[0]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, context_dim={self.context_dim}, layers=[{', '.join(self.layer_specs)}]"
