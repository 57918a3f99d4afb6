"""`torch.compile` of a vector field, compiled once per field and reused by every solve (`solver.compile`)."""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch import nn

__all__ = ["compiled"]

_CACHE: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()


def compiled(vector_field: nn.Module) -> nn.Module:
    """`torch.compile(vector_field, dynamic=False)`, cached per field (the compiled module shares its
    parameters). Shapes are static: a new batch size or dtype recompiles once, then is cached by dynamo."""
    try:
        return _CACHE[vector_field]
    except (KeyError, TypeError):
        pass
    # dynamo's first set-up (TorchPatcher.patch) switches torch.distributions' argument validation off
    # for the whole process; a solver option must not silence the user's distributions, so restore it
    validate = torch.distributions.Distribution._validate_args
    try:
        fast = torch.compile(vector_field, dynamic=False)
    finally:
        torch.distributions.Distribution.set_default_validate_args(validate)
    with contextlib.suppress(TypeError):  # not weak-referenceable: compile each call
        _CACHE[vector_field] = fast
    return fast
