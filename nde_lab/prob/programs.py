"""Probabilistic programs declared from a recipe: priors + a deterministic model + an observation model.

Every program's Pyro model names its latent sites after the recipe's parameters and its observed site
`y`; every site has only event dimensions, so an outer `pyro.plate` over dim -1 batches the whole
program over draws or particles (one ODE solve then covers every parameter set).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor

from nde_lab.errors import DataError, RecipeError
from nde_lab.prob.data import SeriesData, TabularData
from nde_lab.prob.distributions import Prior, check_positive_prior, parse_priors
from nde_lab.prob.likelihoods import Likelihood

__all__ = ["LinearRegressionProgram", "ProbProgram", "SeriesProgram"]

OBS = "y"


class ProbProgram(ABC):
    """A Pyro model over named parameters, bound to observed data with `bind`.

    Subclasses define the deterministic prediction; the base class samples the priors and the
    observation. All tensors have leading batch dims `*batch` (draws) or none.
    """

    def __init__(self, *, priors: dict[str, Prior], likelihood: Likelihood, required: list[str]) -> None:
        if not isinstance(likelihood, Likelihood):
            likelihood = Likelihood(**likelihood) if isinstance(likelihood, dict) else likelihood
        self.likelihood = likelihood
        needed = list(required) + [p for role, p in likelihood.roles().items() if role not in self.fixed_noise()]
        self.priors = parse_priors(priors, required=needed)
        for role, pname in likelihood.roles().items():
            if role not in self.fixed_noise():
                check_positive_prior(self.priors[pname], f"priors.{pname}",
                                     f"the {likelihood.family} likelihood's {role} (likelihood.{role}: {pname})")
        if OBS in self.priors:
            raise RecipeError(f"priors: {OBS!r} is the name of the observed site; rename that parameter.")
        self._cache: dict[torch.dtype, dict[str, dist.TorchDistribution]] = {}
        self.data: SeriesData | TabularData | None = None

    @property
    def _dists(self) -> dict[str, dist.TorchDistribution]:
        """The priors built in the current default dtype (rebuilt once per dtype)."""
        dtype = torch.get_default_dtype()
        if dtype not in self._cache:
            self._cache[dtype] = {name: p.build(f"priors.{name}") for name, p in self.priors.items()}
        return self._cache[dtype]

    # ---- interface --------------------------------------------------------------------------------
    @abstractmethod
    def bind(self, data: Any) -> None:
        """Validate `data` against the program and keep it (raises DataError on a mismatch)."""

    @abstractmethod
    def predict(self, params: dict[str, Tensor], x: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Mean prediction z (*batch, *obs_shape) at inputs x (default: the data's), and log z or None."""

    @property
    @abstractmethod
    def obs_dims(self) -> tuple[str, ...]:
        """Dimension names of one observation array (e.g. ("time", "state"))."""

    @abstractmethod
    def obs_coords(self, x: Tensor | None = None) -> dict[str, Any]:
        """Coordinates of `obs_dims` for inputs x (default: the data's)."""

    def fixed_noise(self) -> dict[str, float]:
        """Noise roles fixed to a number instead of a parameter (e.g. known noise)."""
        return {}

    def param_dims(self, name: str) -> tuple[str, ...]:
        """Dimension names of one draw of parameter `name` (ArviZ's `<name>_dim_<i>` by default)."""
        shape = self.param_shape(name)
        return tuple(f"{name}_dim_{i}" for i in range(len(shape)))

    def param_coords(self) -> dict[str, Any]:
        return {}

    # ---- shared machinery ---------------------------------------------------------------------------
    @property
    def parameter_names(self) -> list[str]:
        return list(self.priors)

    def param_shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._dists[name].event_shape)

    def prior(self, name: str) -> dist.TorchDistribution:
        return self._dists[name]

    @property
    def observed(self) -> Tensor:
        self._require_data()
        y = self.data.values if isinstance(self.data, SeriesData) else self.data.y
        return y.to(torch.get_default_dtype())

    def _require_data(self) -> None:
        if self.data is None:
            raise RuntimeError(f"{type(self).__name__} has no data: call bind(data) first.")

    def _noise(self, params: dict[str, Tensor], obs_ndim: int) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        fixed = self.fixed_noise()
        for role, pname in self.likelihood.roles().items():
            if role in fixed:
                out[role] = torch.as_tensor(fixed[role], dtype=torch.get_default_dtype())
                continue
            value = params[pname]
            event = self.param_shape(pname)
            # (*batch, *event) -> (*batch, 1.., *event): broadcast over the leading obs dims
            for _ in range(obs_ndim - len(event)):
                value = value.unsqueeze(-len(event) - 1)
            out[role] = value
        return out

    def observation_dist(self, params: dict[str, Tensor], x: Tensor | None = None) -> dist.TorchDistribution:
        """p(y | params) with batch shape (*batch, *obs_shape) and no event dims."""
        z, log_z = self.predict(params, x)
        return self.likelihood.distribution(z, self._noise(params, len(self.obs_dims)), log_prediction=log_z)

    def model(self, *, observed: bool = True) -> dict[str, Tensor]:
        """The Pyro model: sample every prior, then `y` (conditioned on the data when `observed`)."""
        self._require_data()
        params = {name: pyro.sample(name, d) for name, d in self._dists.items()}
        obs_dist = self.observation_dist(params)
        pyro.sample(OBS, obs_dist.to_event(len(self.obs_dims)), obs=self.observed if observed else None)
        return params

    def pointwise_log_likelihood(self, params: dict[str, Tensor]) -> Tensor:
        """log p(y_i | params) per observation: shape (*batch, *obs_shape)."""
        return self.observation_dist(params).log_prob(self.observed)


class SeriesProgram(ProbProgram):
    """A program whose observations are a time series y (time, state) (`SeriesData`)."""

    @property
    def obs_dims(self) -> tuple[str, ...]:
        return ("time", "state")

    def obs_coords(self, x: Tensor | None = None) -> dict[str, Any]:
        self._require_data()
        times = self.data.times if x is None else x
        # every group built from these coordinates (observed, predictive, log-likelihood) carries the time
        # units; "X since Y" is split into units and origin so xarray does not decode it as CF datetimes
        unit, _, origin = str(getattr(self.data, "time_units", "")).partition(" since ")
        attrs = {"units": unit, **({"origin": origin} if origin else {})}
        return {"time": ("time", times.detach().cpu().numpy(), attrs), "state": list(self.data.state_names)}

    def param_coords(self) -> dict[str, Any]:
        return {"state": list(self.data.state_names)} if self.data is not None else {}

    def _solve_grid(self, x: Tensor | None, dtype: torch.dtype, t0: float | None = None) -> tuple[Tensor, Tensor, bool]:
        """The solve grid for prediction times `x` (default: the observed times), which must be increasing
        and not before the initial time t0 (default: the first observation). Returns (times, grid of >= 2
        times, whether the grid starts with a prepended t0 that the output must drop)."""
        self._require_data()
        data_times = self.data.times.to(dtype)
        t0 = data_times[0] if t0 is None else torch.as_tensor(t0, dtype=dtype)
        times = data_times if x is None else torch.as_tensor(x, dtype=dtype)
        if times.ndim != 1 or bool((times < t0 - 1e-12).any()) or (times.numel() > 1 and not bool((times[1:] > times[:-1]).all())):
            raise DataError(f"prediction times must be increasing and not before t0={float(t0):g}.")
        prepend = bool(times[0] > t0) or times.numel() == 1
        grid = torch.cat([t0.reshape(1), times]) if prepend else times
        if grid.numel() == 1:
            grid = torch.cat([grid, grid + 1.0])
        return times, grid, prepend


class LinearRegressionProgram(ProbProgram):
    """Bayesian linear regression y_i ~ family(a + sum_k b_k x_ik, noise).

    Args:
        priors: priors of the intercept, of each coefficient and of the noise (unless `noise_scale`).
        coefficients: parameter names of the coefficients, in the order of the data's feature columns.
        intercept: parameter name of the intercept.
        likelihood: observation family (default Normal with scale `sigma`).
        noise_scale: a known noise scale; the likelihood's scale parameter then needs no prior.
    """

    def __init__(
        self,
        *,
        priors: dict[str, Prior],
        coefficients: list[str],
        intercept: str = "a",
        likelihood: Likelihood | None = None,
        noise_scale: float | None = None,
    ) -> None:
        self.coefficients = list(coefficients)
        self.intercept = intercept
        self.noise_scale = noise_scale
        if noise_scale is not None and not noise_scale > 0:
            raise RecipeError(f"noise_scale must be positive, got {noise_scale!r}.")
        likelihood = likelihood or Likelihood(family="Normal", scale="sigma")
        super().__init__(priors=priors, likelihood=likelihood, required=[intercept, *self.coefficients])
        for name in [intercept, *self.coefficients]:
            if self.param_shape(name) != ():
                raise RecipeError(f"priors.{name}: regression weights are scalars, got shape {list(self.param_shape(name))}.")

    def fixed_noise(self) -> dict[str, float]:
        return {"scale": float(self.noise_scale)} if self.noise_scale is not None else {}

    def bind(self, data: TabularData) -> None:
        if not isinstance(data, TabularData):
            raise DataError(f"LinearRegressionProgram needs TabularData (x, y), got {type(data).__name__}.")
        if data.x.shape[1] != len(self.coefficients):
            raise DataError(
                f"{data.source}: {data.x.shape[1]} feature columns {data.feature_names} but "
                f"{len(self.coefficients)} coefficients {self.coefficients}; give one coefficient per column."
            )
        self.data = data

    @property
    def obs_dims(self) -> tuple[str, ...]:
        return ("obs",)

    def obs_coords(self, x: Tensor | None = None) -> dict[str, Any]:
        self._require_data()
        n = (self.data.x if x is None else x).shape[0]
        return {"obs": list(range(n))}

    def predict(self, params: dict[str, Tensor], x: Tensor | None = None) -> tuple[Tensor, None]:
        self._require_data()
        dtype = torch.get_default_dtype()
        x = self.data.x.to(dtype) if x is None else torch.as_tensor(x, dtype=dtype)
        b = torch.stack([params[c] for c in self.coefficients], dim=-1)  # (*batch, K)
        mean = params[self.intercept].unsqueeze(-1) + (b.unsqueeze(-2) * x).sum(-1)  # (*batch, N)
        return mean, None
