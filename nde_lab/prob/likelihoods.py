"""Observation models: the distribution of data given the model's prediction and noise parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyro.distributions as dist
from torch import Tensor

from nde_lab.errors import RecipeError

__all__ = ["LIKELIHOOD_FAMILIES", "Likelihood"]

LikelihoodFamily = Literal["Normal", "LogNormal", "StudentT", "Poisson", "NegativeBinomial", "Binomial"]

#: family -> (noise parameters it needs, whether observations must be positive / counts)
LIKELIHOOD_FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "Normal": (("scale",), "real"),
    "LogNormal": (("scale",), "positive"),
    "StudentT": (("scale", "df"), "real"),
    "Poisson": ((), "count"),
    "NegativeBinomial": (("concentration",), "count"),
    "Binomial": ((), "count"),
}


@dataclass
class Likelihood:
    """y | prediction z, noise ~ family, with the noise parameters named after priors of the model.

    Parameterisations (z is the model's prediction in data units, broadcast over observations):
      - Normal(loc=z, scale), StudentT(df, loc=z, scale);
      - LogNormal(loc=log z, scale): median z, multiplicative noise (log z is passed directly when the
        model evolves log-populations);
      - Poisson(rate=z);
      - NegativeBinomial with mean z and concentration phi: total_count=phi, logits=log z - log phi;
      - Binomial(total_count, probs=z): z is a probability (clamped to [0, 1]), e.g. a prevalence
        I / N through an observation scale of 1/N; `total_count` is the known number of trials.

    Args:
        family: one of LIKELIHOOD_FAMILIES.
        scale, df, concentration: names of the model parameters (priors) used as noise parameters; a
            parameter of shape [D] gives one value per observed state. Each must have a prior whose
            support is positive (checked by the program, naming the site).
        total_count: Binomial's number of trials (a known positive integer).
    """

    family: LikelihoodFamily = "Normal"
    scale: str | None = None
    df: str | None = None
    concentration: str | None = None
    total_count: int | None = None

    def __post_init__(self) -> None:
        if self.family not in LIKELIHOOD_FAMILIES:
            raise RecipeError(
                f"likelihood.family must be one of {sorted(LIKELIHOOD_FAMILIES)}, got {self.family!r}."
            )
        needed = LIKELIHOOD_FAMILIES[self.family][0]
        for name in needed:
            if getattr(self, name) is None:
                raise RecipeError(
                    f"likelihood.family={self.family!r} needs likelihood.{name}: the name of a parameter with a prior."
                )
        for name in ("scale", "df", "concentration"):
            if name not in needed and getattr(self, name) is not None:
                raise RecipeError(f"likelihood.family={self.family!r} takes no {name}; remove likelihood.{name}.")
        if (self.family == "Binomial") != (self.total_count is not None):
            raise RecipeError("likelihood.total_count: the Binomial family needs it (the known number of trials, a "
                              f"positive integer) and the others take none; got family={self.family!r}, "
                              f"total_count={self.total_count!r}.")
        if self.total_count is not None and not (float(self.total_count).is_integer() and self.total_count > 0):
            raise RecipeError(f"likelihood.total_count must be a positive integer, got {self.total_count!r}.")

    @property
    def noise_parameters(self) -> list[str]:
        """Names of the parameters this likelihood reads."""
        return [getattr(self, n) for n in LIKELIHOOD_FAMILIES[self.family][0]]

    @property
    def support(self) -> str:
        return LIKELIHOOD_FAMILIES[self.family][1]

    def distribution(self, prediction: Tensor, noise: dict[str, Tensor], *, log_prediction: Tensor | None = None
                     ) -> dist.TorchDistribution:
        """The observation distribution, batch shape = prediction's shape (no event dims).

        Args:
            prediction: z, shape (*batch, T, D) (or (*batch, N) for regression).
            noise: noise values by role ("scale", "df", "concentration"), already shaped by the caller
                to broadcast with `prediction` (e.g. (*batch, 1, D) or (*batch, 1, 1)).
            log_prediction: log z when it is available exactly (avoids log of an underflowed z).
        """
        if self.family == "Normal":
            return dist.Normal(prediction, noise["scale"])
        if self.family == "LogNormal":
            loc = log_prediction if log_prediction is not None else prediction.log()
            return dist.LogNormal(loc, noise["scale"])
        if self.family == "StudentT":
            return dist.StudentT(noise["df"], prediction, noise["scale"])
        if self.family == "Poisson":
            return dist.Poisson(prediction)
        if self.family == "Binomial":
            return dist.Binomial(total_count=float(self.total_count), probs=prediction.clamp(0.0, 1.0))
        phi = noise["concentration"]
        loc = log_prediction if log_prediction is not None else prediction.log()
        return dist.NegativeBinomial(total_count=phi, logits=loc - phi.log())

    def roles(self) -> dict[str, str]:
        """Noise role -> parameter name, e.g. {"scale": "sigma"}."""
        return {n: getattr(self, n) for n in LIKELIHOOD_FAMILIES[self.family][0]}
