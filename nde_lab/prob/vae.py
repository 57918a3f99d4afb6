"""A variational autoencoder as a Pyro program: decoder = model, encoder = guide, optional IAF posterior."""

from __future__ import annotations

import math
from typing import Literal

import pyro
import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import Tensor, nn

from nde_lab.errors import DataError, RecipeError

__all__ = ["VAE", "Likelihood", "independent_pixel_nll"]

Likelihood = Literal["bernoulli", "binomial"]


Activation = Literal["tanh", "relu", "softplus"]
_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "softplus": nn.Softplus}


def _mlp(n_in: int, hidden: list[int], n_out: int, activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), _ACTIVATIONS[activation]()]
        n_in = width
    return nn.Sequential(*layers, nn.Linear(n_in, n_out))


class VAE(nn.Module):
    """p(z) = N(0, I), p(x | z) = Bernoulli or Binomial(decoder(z)); q(z | x) = N(μ(x), σ(x)²) [→ IAF].

    The Pyro program is `model(x)` (the decoder, generative model) and `guide(x)` (the encoder,
    amortised posterior); train them with `pyro.infer.Trace_ELBO` (Kingma & Welling 2014). With
    `iaf_layers > 0` the posterior is refined by inverse autoregressive flows conditioned on the
    encoder's features (Kingma et al. 2016), built from Pyro's transforms.

    Main arguments:
        data_dim: D, pixels per image (64 for the 8x8 digits).
        latent_dim: dimension of z.

    Other arguments:
        hidden: widths of the encoder's hidden layers (the decoder mirrors them).
        likelihood: "bernoulli" (binary pixels) or "binomial" (integer intensities 0..total_count).
        total_count: the binomial's number of trials (16 for the digits' intensities).
        iaf_layers: number of IAF layers in the posterior (0: diagonal Gaussian).
        iaf_hidden: widths of each IAF's MADE network.
        activation: hidden nonlinearity ("tanh" default; "softplus" tends to collapse the posterior
            onto the prior on the small digits set).
    """

    def __init__(
        self,
        data_dim: int = 64,
        *,
        latent_dim: int = 8,
        hidden: list[int] = [128, 128],  # noqa: B006
        likelihood: Likelihood = "bernoulli",
        total_count: int = 16,
        iaf_layers: int = 0,
        iaf_hidden: list[int] = [64],  # noqa: B006
        activation: Activation = "tanh",
    ) -> None:
        super().__init__()
        if likelihood not in ("bernoulli", "binomial"):
            raise RecipeError(f"VAE.likelihood={likelihood!r} is not valid; must be one of 'bernoulli', 'binomial'.")
        if activation not in _ACTIVATIONS:
            raise RecipeError(f"VAE.activation={activation!r} is not valid; must be one of {', '.join(map(repr, _ACTIVATIONS))}.")
        if data_dim < 1 or latent_dim < 1 or iaf_layers < 0 or not hidden or total_count < 1:
            raise RecipeError(
                "VAE needs data_dim, latent_dim, total_count >= 1, iaf_layers >= 0 and a non-empty hidden list; "
                f"got data_dim={data_dim}, latent_dim={latent_dim}, total_count={total_count}, "
                f"iaf_layers={iaf_layers}, hidden={hidden}."
            )
        if iaf_layers and latent_dim < 2:
            raise RecipeError(f"an IAF posterior needs latent_dim >= 2, got {latent_dim}.")
        self.data_dim, self.latent_dim = data_dim, latent_dim
        self.likelihood_name, self.total_count = likelihood, total_count
        self.features = _mlp(data_dim, hidden[:-1], hidden[-1], activation)
        self.encoder_head = nn.Sequential(_ACTIVATIONS[activation](), nn.Linear(hidden[-1], 2 * latent_dim))
        self.decoder = _mlp(latent_dim, list(reversed(hidden)), data_dim, activation)
        self.iafs = nn.ModuleList(
            T.conditional_affine_autoregressive(latent_dim, hidden[-1], hidden_dims=list(iaf_hidden))
            for _ in range(iaf_layers)
        )

    # ---- the distributions ---------------------------------------------------------------------
    def prior(self, n: int) -> dist.Distribution:
        """p(z), batch shape (n,), event (latent_dim,)."""
        zeros = torch.zeros(n, self.latent_dim, dtype=self._dtype(), device=self._device())
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def posterior(self, x: Tensor) -> dist.Distribution:
        """q(z | x), batch shape (n,), event (latent_dim,); x (n, D)."""
        h = self.features(x)
        loc, raw = self.encoder_head(h).chunk(2, dim=-1)
        base = dist.Normal(loc, nn.functional.softplus(raw) + 1e-4).to_event(1)
        if not self.iafs:
            return base
        return dist.TransformedDistribution(base, [iaf.condition(h) for iaf in self.iafs])

    def likelihood(self, z: Tensor) -> dist.Distribution:
        """p(x | z), batch shape z.shape[:-1], event (D,)."""
        logits = self.decoder(z)
        if self.likelihood_name == "bernoulli":
            return dist.Bernoulli(logits=logits).to_event(1)
        return dist.Binomial(total_count=self.total_count, logits=logits).to_event(1)

    # ---- the Pyro program ----------------------------------------------------------------------
    def model(self, x: Tensor) -> None:
        """Generative model (decoder): z ~ p(z), x ~ p(x | z); x (n, D) observed."""
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x.shape[0]))
            pyro.sample("x", self.likelihood(z), obs=x)

    def guide(self, x: Tensor) -> None:
        """Amortised variational posterior (encoder): z ~ q(z | x)."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", self.posterior(x))

    # ---- estimators ----------------------------------------------------------------------------
    def log_weights(self, x: Tensor, num_particles: int) -> Tensor:
        """log p(x, z_k) − log q(z_k | x) for K = num_particles draws z_k ~ q: (K, n), nats."""
        self.check_data(x)
        q = self.posterior(x)
        z = q.rsample((num_particles,))
        return self.prior(x.shape[0]).log_prob(z) + self.likelihood(z).log_prob(x) - q.log_prob(z)

    def elbo(self, x: Tensor, *, num_particles: int = 1) -> tuple[Tensor, Tensor]:
        """Per-image ELBO (n,) in nats, averaged over `num_particles` draws, and its MC standard error."""
        lw = self.log_weights(x, num_particles)
        se = lw.std(0) / math.sqrt(num_particles) if num_particles > 1 else torch.full_like(lw[0], float("nan"))
        return lw.mean(0), se

    def iwae(self, x: Tensor, *, num_particles: int = 100) -> tuple[Tensor, Tensor]:
        """Importance-weighted bound log (1/K) Σ_k w_k on log p(x) (Burda et al. 2016): (n,) nats.

        Returns the estimate and its delta-method MC standard error sd(w)/(√K · mean(w)), computed
        stably from the normalised weights (NaN for K = 1).
        """
        lw = self.log_weights(x, num_particles)
        estimate = torch.logsumexp(lw, 0) - math.log(num_particles)
        if num_particles < 2:
            return estimate, torch.full_like(estimate, float("nan"))
        w = torch.exp(lw - lw.max(0, keepdim=True).values)
        se = w.std(0) / (math.sqrt(num_particles) * w.mean(0))
        return estimate, se

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoder mean (pixel probabilities, scaled to the data's range) at the posterior mean code."""
        h = self.features(x)
        loc = self.encoder_head(h).chunk(2, dim=-1)[0]
        for iaf in self.iafs:
            loc = iaf.condition(h)(loc)
        return self.mean(loc)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The base Gaussian's mean and scale of q(z | x): two (n, latent_dim) arrays."""
        loc, raw = self.encoder_head(self.features(x)).chunk(2, dim=-1)
        return loc, nn.functional.softplus(raw) + 1e-4

    def mean(self, z: Tensor) -> Tensor:
        """E[x | z], (n, D): probabilities (Bernoulli) or expected intensities (binomial)."""
        p = torch.sigmoid(self.decoder(z))
        return p if self.likelihood_name == "bernoulli" else p * self.total_count

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n images x ~ p(x) = ∫ p(x | z) p(z) dz and their means E[x | z]: two (n, D) arrays."""
        # uniforms drawn on the CPU (where a seeded generator lives), then moved to the model's device
        z = torch.randn(n, self.latent_dim, generator=generator, dtype=self._dtype()).to(self._device())
        p = torch.sigmoid(self.decoder(z))
        if self.likelihood_name == "bernoulli":
            x = (torch.rand(p.shape, generator=generator, dtype=p.dtype).to(p.device) < p).to(p.dtype)
        else:
            u = torch.rand((self.total_count, *p.shape), generator=generator, dtype=p.dtype).to(p.device)
            x = (u < p).to(p.dtype).sum(0)
        return x, self.mean(z)

    # ---- validation ----------------------------------------------------------------------------
    def check_data(self, x: Tensor) -> None:
        """x must be (n, data_dim) with values in the likelihood's support."""
        if x.ndim != 2 or x.shape[-1] != self.data_dim:
            raise DataError(
                f"data dimension mismatch: the VAE was built for data_dim={self.data_dim} but got data of shape "
                f"{tuple(x.shape)}; set the VAE's data_dim to the number of pixels."
            )
        top = 1 if self.likelihood_name == "bernoulli" else self.total_count
        if not bool(((x >= 0) & (x <= top) & (x == torch.round(x))).all()):
            raise DataError(
                f"the {self.likelihood_name} likelihood needs integer pixels in [0, {top}]; got values in "
                f"[{float(x.min()):g}, {float(x.max()):g}] (binarize the data for 'bernoulli', or use 'binomial')."
            )

    def _dtype(self) -> torch.dtype:
        return self.decoder[-1].weight.dtype

    def _device(self) -> torch.device:
        return self.decoder[-1].weight.device


def independent_pixel_nll(train: Tensor, test: Tensor, *, likelihood: Likelihood = "bernoulli",
                          total_count: int = 16, eps: float = 1e-3) -> Tensor:
    """Baseline: held-out NLL (nats per image, (n_test,)) of independent pixels fitted by maximum likelihood.

    Each pixel j gets p_j = mean of train[:, j] (divided by total_count for the binomial), clipped to
    [eps, 1 - eps] so that pixels constant in training do not give infinite loss.
    """
    p = train.mean(0) / (1 if likelihood == "bernoulli" else total_count)
    p = p.clamp(eps, 1 - eps)
    if likelihood == "bernoulli":
        return -dist.Bernoulli(probs=p).to_event(1).log_prob(test)
    return -dist.Binomial(total_count=total_count, probs=p).to_event(1).log_prob(test)
