"""Declarative priors: a `pyro.distributions` family by name with its arguments, shape and bounds."""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import Tensor

from nde_lab.errors import RecipeError

__all__ = ["Prior", "Truncated", "check_positive_prior", "distribution_names", "make_distribution", "parse_priors"]

_NO_SHAPE = torch.Size()


def distribution_names() -> list[str]:
    """Names of every distribution family in `pyro.distributions` (the vocabulary of `dist:`)."""
    names = []
    for name in dir(dist):
        obj = getattr(dist, name)
        if (inspect.isclass(obj) and issubclass(obj, torch.distributions.Distribution) and not name.startswith("_")
                and name not in {"Distribution", "TorchDistribution", "TorchDistributionMixin", "TransformedDistribution",
                                 "ExponentialFamily", "Independent", "MaskedDistribution", "ExpandedDistribution"}):
            names.append(name)
    return sorted(names)


def _family(name: str, *, key: str) -> type:
    if not isinstance(name, str) or name not in distribution_names():
        close = difflib.get_close_matches(str(name), distribution_names(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise RecipeError(
            f"{key}: unknown distribution {name!r}.{hint} Use a family of pyro.distributions "
            f"(for instance 'Normal', 'LogNormal', 'HalfNormal', 'Gamma', 'Uniform')."
        )
    return getattr(dist, name)


def _has_cdf(base: dist.TorchDistribution) -> bool:
    probe = torch.zeros(base.batch_shape, dtype=torch.get_default_dtype())
    try:
        base.cdf(probe.clamp_min(1e-3) if base.support is not constraints.real else probe)
        base.icdf(torch.full_like(probe, 0.5))
    except NotImplementedError:
        return False
    return True


class Truncated(dist.TorchDistribution):
    """`base` restricted to [low, high] and renormalised: log p(x) = log p_base(x) - log(F(high) - F(low)).

    Any scalar-event continuous base. With torch's `cdf` and `icdf` (Normal, Cauchy, Laplace, Exponential,
    LogNormal, HalfNormal, Uniform...) the mass is exact and sampling is by inversion (reparameterised).
    Without them (Gamma, Beta, StudentT, InverseGamma...) the mass F(high) - F(low) is integrated once by
    `scipy.integrate.quad` (a prior's arguments are fixed numbers) and sampling is by rejection from the base.
    """

    arg_constraints: dict = {}
    has_rsample = True
    #: below this kept mass rejection sampling would stall: the recipe's bounds are refused instead
    MIN_MASS = 1e-6

    def __init__(self, base: dist.TorchDistribution, low: float | None = None, high: float | None = None,
                 validate_args: bool | None = None, *, _log_mass: Tensor | None = None) -> None:
        self.base = base
        self.low = -math.inf if low is None else float(low)
        self.high = math.inf if high is None else float(high)
        like = base.mean if base.batch_shape else torch.zeros(())
        self.by_inversion = _has_cdf(base)
        if self.by_inversion:
            lo = torch.as_tensor(self.low, dtype=like.dtype)
            hi = torch.as_tensor(self.high, dtype=like.dtype)
            self._cdf_low = base.cdf(lo) if math.isfinite(self.low) else torch.zeros_like(like)
            self._cdf_high = base.cdf(hi) if math.isfinite(self.high) else torch.ones_like(like)
            self._log_mass = torch.log(self._cdf_high - self._cdf_low)
        else:
            self.has_rsample = False
            self._log_mass = _log_mass if _log_mass is not None else self._integrated_log_mass(like)
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    def _integrated_log_mass(self, like: Tensor) -> Tensor:
        from scipy.integrate import quad

        support = self.base.support
        low = max(self.low, float(getattr(support, "lower_bound", -math.inf)))
        high = min(self.high, float(getattr(support, "upper_bound", math.inf)))
        flat = like.shape.numel() if like.shape else 1
        masses = []
        for i in range(flat):
            def density(x: float, i: int = i) -> float:
                value = torch.full(like.shape, x, dtype=like.dtype)
                if not bool(support.check(value).all()):
                    return 0.0
                return float(self.base.log_prob(value).reshape(-1)[i].exp())
            masses.append(quad(density, low, high, limit=200)[0] if low < high else 0.0)
        return torch.log(torch.as_tensor(masses, dtype=like.dtype).reshape(like.shape))

    @property
    def mass(self) -> Tensor:
        """F(high) - F(low) under the base, batch shape."""
        return self._log_mass.exp()

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):  # type: ignore[override]
        if math.isfinite(self.low) and math.isfinite(self.high):
            return constraints.interval(self.low, self.high)
        if math.isfinite(self.low):
            return constraints.greater_than(self.low)
        if math.isfinite(self.high):
            return constraints.less_than(self.high)
        return constraints.real

    def expand(self, batch_shape, _instance=None):
        if self.by_inversion:
            return Truncated(self.base.expand(batch_shape), self.low, self.high)
        return Truncated(self.base.expand(batch_shape), self.low, self.high, _log_mass=self._log_mass.expand(batch_shape))

    def sample(self, sample_shape: torch.Size = _NO_SHAPE) -> Tensor:
        if self.by_inversion:
            with torch.no_grad():
                return self.rsample(sample_shape)
        with torch.no_grad():
            out = self.base.sample(sample_shape)
            todo = (out < self.low) | (out > self.high)
            for _ in range(100_000):
                if not bool(todo.any()):
                    return out
                draw = self.base.sample(sample_shape)
                out = torch.where(todo, draw, out)
                todo = todo & ((draw < self.low) | (draw > self.high))
        raise RuntimeError("Truncated: rejection sampling did not finish; the kept mass is too small.")

    def rsample(self, sample_shape: torch.Size = _NO_SHAPE) -> Tensor:
        if not self.by_inversion:
            raise NotImplementedError(f"Truncated({type(self.base).__name__}) samples by rejection; it has no rsample.")
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, dtype=self._cdf_low.dtype, device=self._cdf_low.device)
        p = self._cdf_low + u * (self._cdf_high - self._cdf_low)
        eps = torch.finfo(p.dtype).eps
        x = self.base.icdf(p.clamp(eps, 1 - eps))
        return x.clamp(min=self.low, max=self.high)

    def log_prob(self, value: Tensor) -> Tensor:
        inside = (value >= self.low) & (value <= self.high)
        if not bool(inside.all()):  # the base may refuse values outside its own support: score a kept point
            lo, hi = self.low, self.high
            kept = (lo + hi) / 2 if math.isfinite(lo) and math.isfinite(hi) else lo + 1.0 if math.isfinite(lo) else (
                hi - 1.0 if math.isfinite(hi) else 0.0)
            value = torch.where(inside, value, torch.full_like(value, kept))
        lp = self.base.log_prob(value) - self._log_mass
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    @property
    def mean(self) -> Tensor:  # Monte Carlo-free only for the Normal; otherwise not needed by the lab
        if isinstance(self.base, dist.Normal):
            a = (self.low - self.base.loc) / self.base.scale
            b = (self.high - self.base.loc) / self.base.scale
            n = torch.distributions.Normal(0.0, 1.0)
            num = n.log_prob(a).exp() - n.log_prob(b).exp()
            return self.base.loc + self.base.scale * num / (self._cdf_high - self._cdf_low)
        raise NotImplementedError("Truncated.mean is implemented for a Normal base only.")


@dataclass
class Prior:
    """One named parameter's prior, as written in a recipe.

    Args:
        dist: a `pyro.distributions` family name ("Normal", "LogNormal", "HalfCauchy", ...).
        args: the family's constructor arguments (numbers or nested lists), e.g. {loc: 1.0, scale: 0.5}.
        shape: the parameter's shape (one draw), e.g. [2] for two initial populations; [] for a scalar.
        low, high: truncate the family to [low, high] (e.g. `low: 0` for "positive"); the density is
            renormalised. Needs a family with a cdf (Normal, Cauchy, StudentT is not supported).
    """

    dist: str
    args: dict[str, Any] = field(default_factory=dict)
    shape: list[int] = field(default_factory=list)
    low: float | None = None
    high: float | None = None

    def build(self, name: str = "prior") -> dist.TorchDistribution:
        """The distribution of one draw, with event shape `shape` (validated; raises RecipeError)."""
        return make_distribution(self.dist, self.args, shape=self.shape, low=self.low, high=self.high, key=name)


def make_distribution(
    name: str,
    args: dict[str, Any],
    *,
    shape: list[int] | tuple[int, ...] = (),
    low: float | None = None,
    high: float | None = None,
    key: str = "prior",
) -> dist.TorchDistribution:
    """Build `pyro.distributions.<name>(**args)`, truncated to [low, high] and expanded to event `shape`.

    Raises:
        RecipeError: unknown family (with close names), bad or missing arguments, arguments outside the
            family's constraints, truncation of a family without a cdf, a bad shape.
    """
    family = _family(name, key=key)
    if not isinstance(args, dict):
        raise RecipeError(f"{key}: args must be a mapping of argument name to value, got {args!r}.")
    params = inspect.signature(family.__init__).parameters
    accepted = [p for p in params if p not in {"self", "validate_args"}]
    unknown = [a for a in args if a not in accepted]
    if unknown:
        raise RecipeError(f"{key}: {name} has no argument(s) {unknown}; it accepts {accepted}.")
    dtype = torch.get_default_dtype()
    tensors = {}
    for arg, value in args.items():
        try:
            tensors[arg] = torch.as_tensor(value, dtype=dtype)
        except (TypeError, ValueError) as err:
            raise RecipeError(f"{key}: argument {arg}={value!r} of {name} is not a number or list of numbers.") from err
        if not torch.isfinite(tensors[arg]).all():
            raise RecipeError(f"{key}: argument {arg}={value!r} of {name} must be finite.")
    try:
        d = family(**tensors, validate_args=True)
    except (ValueError, TypeError) as err:
        first = str(err).splitlines()[0]
        raise RecipeError(
            f"{key}: invalid arguments {args} for {name}: {first}. Check each argument's constraint "
            f"(for instance scale > 0) and that all required arguments of {accepted} are given."
        ) from None
    if low is not None or high is not None:
        if low is not None and high is not None and not low < high:
            raise RecipeError(f"{key}: truncation needs low < high, got low={low}, high={high}.")
        if d.event_shape:
            raise RecipeError(f"{key}: truncation needs a scalar-event family; {name} has event shape {tuple(d.event_shape)}.")
        if d.support.is_discrete:
            raise RecipeError(f"{key}: truncation needs a continuous family; {name} is discrete.")
        d = Truncated(d, low, high)
        if not bool((d.mass >= Truncated.MIN_MASS).all()):
            raise RecipeError(f"{key}: [low, high] = [{low}, {high}] keeps only {float(d.mass.min()):.3g} of {name}'s "
                              "mass; widen the bounds or move the prior.")
    shape = tuple(int(s) for s in shape)
    if any(s < 1 for s in shape):
        raise RecipeError(f"{key}: shape must hold positive integers, got {list(shape)}.")
    if d.event_shape and shape and tuple(d.event_shape) != shape:
        raise RecipeError(f"{key}: shape {list(shape)} does not match {name}'s event shape {tuple(d.event_shape)}.")
    if not d.event_shape:
        if d.batch_shape and tuple(d.batch_shape) != shape:
            try:
                torch.broadcast_shapes(tuple(d.batch_shape), shape)
            except RuntimeError:
                raise RecipeError(
                    f"{key}: arguments of shape {tuple(d.batch_shape)} do not broadcast to shape {list(shape)}."
                ) from None
        d = d.expand(shape).to_event(len(shape)) if shape else d
    return d


def parse_priors(priors: dict[str, Prior | dict[str, Any]], *, required: list[str] | None = None) -> dict[str, Prior]:
    """Validate a recipe's `priors:` mapping (name -> Prior or plain dict); build each once to check it."""
    if not isinstance(priors, dict) or not priors:
        raise RecipeError(f"priors must be a non-empty mapping of parameter name -> prior, got {priors!r}.")
    out: dict[str, Prior] = {}
    for pname, spec in priors.items():
        if isinstance(spec, dict):
            allowed = {"dist", "args", "shape", "low", "high"}
            extra = set(spec) - allowed
            if extra or "dist" not in spec:
                raise RecipeError(
                    f"priors.{pname}: expected keys {sorted(allowed)} with 'dist' required, got {sorted(spec)}."
                )
            spec = Prior(**spec)
        if not isinstance(spec, Prior):
            raise RecipeError(f"priors.{pname}: expected a mapping with 'dist' and 'args', got {spec!r}.")
        spec.build(f"priors.{pname}")
        out[pname] = spec
    for name in required or []:
        if name not in out:
            raise RecipeError(f"priors: the model needs a prior for {name!r}; got priors for {sorted(out)}.")
    return out


def check_positive_prior(prior: Prior, key: str, role: str) -> None:
    """Raise RecipeError naming `key` unless every draw of `prior` is positive (a scale, a rate, a
    concentration). The support is probed by mapping a far-negative unconstrained point through Pyro's
    `biject_to`, which lands on the support's lower end."""
    built = prior.build(key)
    probe = torch.full(tuple(built.event_shape), -50.0, dtype=torch.get_default_dtype())
    try:
        lowest = dist.transforms.biject_to(built.support)(probe)
    except NotImplementedError:  # a discrete support: not a scale at all
        lowest = torch.zeros(())
    if bool((lowest <= 0).any()):
        raise RecipeError(
            f"{key}: {role} must be positive, but its prior {prior.dist}({prior.args}) can be zero or negative; "
            "use a positive family (HalfNormal, HalfCauchy, Exponential, Gamma, LogNormal) or truncate it with low: 0."
        )
