"""`DensityModel`: the interface of every trainable density in the lab (discrete flows, CNFs)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from nde_lab.errors import DataError, NdeLabError

__all__ = ["DensityModel", "NonFiniteLossError", "check_finite_loss", "standard_normal_log_prob"]


class NonFiniteLossError(NdeLabError, ArithmeticError):
    """A training loss became NaN or infinite; the message names the loss, its value and a fix."""


def check_finite_loss(loss: Tensor, *, name: str, where: str) -> None:
    """Raise `NonFiniteLossError` if `loss` is NaN or infinite.

    Args:
        loss: the scalar loss.
        name: what the loss is ("negative log-likelihood", "negative ELBO").
        where: where it happened (task, epoch, step), for the message.
    """
    if not bool(torch.isfinite(loss).all()):
        raise NonFiniteLossError(
            f"the {name} is non-finite ({float(loss.detach().reshape(-1)[0])!r}) at {where}; "
            "the model diverged or the data holds NaN/inf: lower the learning rate, "
            "check the data for non-finite values, or start the model from a smaller initial scale."
        )


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last axis: (n, D) -> (n,), in nats."""
    return -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


class DensityModel(nn.Module, ABC):
    """A normalised density p(x | context) on R^dim that can be sampled.

    Attributes:
        dim: dimension D of a data point.
        context_dim: dimension C of the conditioning vector (0: unconditional).
    """

    dim: int
    context_dim: int = 0

    @abstractmethod
    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """log p(x | context) in nats: x (n, D), context (n, C) or (C,) -> (n,)."""

    @abstractmethod
    def sample(self, n: int, *, context: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n draws, shape (n, D); `context` (n, C) or (C,) for a conditional model."""

    def loss(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Training loss (mean negative log-likelihood, nats) and the terms to log."""
        nll = -self.log_prob(x, context).mean()
        return nll, {"nll": nll.detach()}

    # ---- validation at the boundary ------------------------------------------------------------
    def check_data(self, x: Tensor, context: Tensor | None = None) -> Tensor | None:
        """Validate x (n, D) and the context; return the context broadcast to (n, C) (or None)."""
        name = type(self).__name__
        if not isinstance(x, Tensor) or x.ndim != 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise DataError(f"{name} expects data of shape (n, {self.dim}) (a batch of points), got {shape}.")
        if x.shape[-1] != self.dim:
            raise DataError(
                f"data dimension mismatch: the data has {x.shape[-1]} coordinates per point but {name} "
                f"was built for dim={self.dim}; set the flow's `dim` to {x.shape[-1]} in the recipe "
                "or give data of the flow's dimension."
            )
        return self.check_context(context, x.shape[0])

    def check_context(self, context: Tensor | None, n: int) -> Tensor | None:
        """Check that a context is given exactly when the model is conditional; broadcast to (n, C)."""
        name = type(self).__name__
        if self.context_dim == 0:
            if context is not None:
                raise DataError(
                    f"{name} is unconditional (context_dim=0) but a context was given; drop the context "
                    "or build the flow with context_dim > 0."
                )
            return None
        if context is None:
            raise DataError(
                f"missing context: {name} is a conditional flow (context_dim={self.context_dim}) and needs "
                f"a context vector of shape (n, {self.context_dim}) or ({self.context_dim},); pass `context=`."
            )
        if context.ndim == 1:
            context = context.expand(n, -1)
        if context.ndim != 2 or context.shape[-1] != self.context_dim or context.shape[0] != n:
            raise DataError(
                f"context has shape {tuple(context.shape)} but {name} needs ({n}, {self.context_dim}) "
                f"or ({self.context_dim},)."
            )
        return context
