"""A Bayesian neural ODE: priors over the weights (last layer or all) of an `MLPVectorField`, batched over draws."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch
from torch import Tensor, nn

from nde_lab.dynamics.base import VectorField
from nde_lab.dynamics.mlp import MLPVectorField
from nde_lab.errors import DataError, RecipeError
from nde_lab.prob.data import SeriesData
from nde_lab.prob.distributions import Prior
from nde_lab.prob.likelihoods import Likelihood
from nde_lab.prob.programs import SeriesProgram
from nde_lab.solvers.ode import ODEMethod, ODESolverOptions, solve_ode

__all__ = ["BatchedMLPField", "NeuralODEProgram"]

Weights = Literal["last_layer", "all"]


def _linears(field: MLPVectorField) -> list[nn.Linear]:
    return [m for m in field.net if isinstance(m, nn.Linear)]


def _layer_names(n_linear: int) -> list[str]:
    return [f"layer{i}" for i in range(n_linear - 1)] + ["out"]


class BatchedMLPField(VectorField):
    """`field` evaluated with some of its Linear layers' weights replaced by batched tensors.

    Args:
        field: the MLP vector field supplying the architecture and the weights that stay fixed.
        weights: layer index -> (W (*batch, out, in), b (*batch, out)); other layers use the field's own.
    """

    def __init__(self, field: MLPVectorField, weights: dict[int, tuple[Tensor, Tensor]]) -> None:
        super().__init__()
        self.field, self.weights = field, weights
        self.dim, self.augment_dim = field.dim, field.augment_dim

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """f(t, y) for y (*batch, state_dim): returns (*batch, state_dim)."""
        f = self.field
        h = y**3 if f.input_map == "cube" else y
        if f.time_input:
            h = torch.cat([h, t.to(y).expand(*y.shape[:-1], 1)], dim=-1)
        i = 0
        for module in f.net:
            if isinstance(module, nn.Linear):
                w, b = self.weights.get(i, (module.weight, module.bias))
                h = (w @ h.unsqueeze(-1)).squeeze(-1) + b
                i += 1
            else:
                h = module(h)
        return h


class NeuralODEProgram(SeriesProgram):
    """y(t_i) ~ likelihood(z(t_i)), dh/dt = MLP_W(h), with Normal(0, prior_scale) priors on the MLP's weights.

    The ODE evolves standardised coordinates h: z = m + s h ("natural") or log z = m + s h ("log"), with
    m, s the per-state mean and sd of the observations (resp. of their logs), so the network works on
    O(1) numbers whatever the data's units. With `weights="last_layer"` only the output layer is latent
    (a "neural linear" model, Riquelme et al. 2018); the hidden layers are the field's own weights, which
    `BayesNeuralODETask` first sets to a MAP fit. Parameters are named `w_out`, `b_out` (and `w<i>`,
    `b<i>` for hidden layer i with `weights="all"`), plus the recipe's `priors` (noise, initial state).

    Main arguments:
        vector_field: an `MLPVectorField` with `dim` = number of observed states.
        priors: priors of the likelihood's noise parameters and of `initial_state` (if a name).
        likelihood: observation family (Normal, LogNormal, StudentT...) with the names of its noise priors.
        weights: "last_layer" or "all".
        prior_scale: sd of the Normal(0, .) prior on every latent weight and bias.
        hidden_prior_scale: with "last_layer", sd of the Normal(0, .) penalty on the hidden layers in the MAP
            pre-fit (`BayesNeuralODETask`); the hidden layers are not latent.

    Other arguments:
        initial_state: a parameter name (prior in data units, shape [D]) or None for the first observation.
        coordinates: "log" (positive data; z = exp(m + s h)) or "natural".
        noise_scale: a known noise scale instead of a prior (then `likelihood.scale` needs no prior).
        method, step_size, rtol, atol: the solve (`nde_lab.solvers.solve_ode`).
    """

    def __init__(
        self,
        *,
        vector_field: MLPVectorField,
        likelihood: Likelihood,
        priors: dict[str, Prior] | None = None,
        weights: Weights = "last_layer",
        prior_scale: float = 1.0,
        hidden_prior_scale: float = 1.0,
        initial_state: str | None = None,
        coordinates: Literal["natural", "log"] = "natural",
        noise_scale: float | None = None,
        method: ODEMethod = "rk4",
        step_size: float | None = 0.1,
        rtol: float = 1e-6,
        atol: float = 1e-8,
    ) -> None:
        if not isinstance(vector_field, MLPVectorField):
            raise RecipeError(f"vector_field must be an nde_lab.dynamics.MLPVectorField, got {type(vector_field).__name__}.")
        if weights not in ("last_layer", "all"):
            raise RecipeError(f"weights must be 'last_layer' or 'all', got {weights!r}.")
        if coordinates not in ("natural", "log"):
            raise RecipeError(f"coordinates must be 'natural' or 'log', got {coordinates!r}.")
        if not prior_scale > 0 or not hidden_prior_scale > 0:
            raise RecipeError(f"prior_scale and hidden_prior_scale must be positive, got {prior_scale!r}, "
                              f"{hidden_prior_scale!r}.")
        if noise_scale is not None and not noise_scale > 0:
            raise RecipeError(f"noise_scale must be positive, got {noise_scale!r}.")
        self.vector_field, self.weights, self.prior_scale = vector_field, weights, float(prior_scale)
        self.hidden_prior_scale = float(hidden_prior_scale)
        self.initial_state, self.coordinates, self.noise_scale = initial_state, coordinates, noise_scale
        self.solver = ODESolverOptions(method=method, step_size=step_size, rtol=rtol, atol=atol)
        linears = _linears(vector_field)
        names = _layer_names(len(linears))
        latent = range(len(linears)) if weights == "all" else [len(linears) - 1]
        #: layer index -> (weight name, bias name)
        self.latent_layers = {i: (f"w_{names[i]}", f"b_{names[i]}") for i in latent}
        user = dict(priors or {})
        weight_priors: dict[str, Prior] = {}
        for i, (wn, bn) in self.latent_layers.items():
            for name, p in ((wn, linears[i].weight), (bn, linears[i].bias)):
                if name in user:
                    raise RecipeError(f"priors.{name}: {name!r} names a network weight; rename that parameter.")
                weight_priors[name] = Prior("Normal", {"loc": 0.0, "scale": self.prior_scale}, shape=list(p.shape))
        required = [initial_state] if initial_state is not None else []
        super().__init__(priors={**weight_priors, **user}, likelihood=likelihood, required=required)
        if initial_state is not None and self.param_shape(initial_state) != (vector_field.dim,):
            raise RecipeError(f"priors.{initial_state}: the initial state needs shape [{vector_field.dim}], got "
                              f"{list(self.param_shape(initial_state))}.")
        self._loc: Tensor | None = None
        self._scale: Tensor | None = None
        self._hidden: dict[int, tuple[Tensor, Tensor]] | None = None

    def fixed_noise(self) -> dict[str, float]:
        return {"scale": float(self.noise_scale)} if self.noise_scale is not None else {}

    def bind(self, data: SeriesData) -> None:
        if not isinstance(data, SeriesData):
            raise DataError(f"NeuralODEProgram needs SeriesData (times, values), got {type(data).__name__}.")
        d = self.vector_field.dim
        if data.values.shape[1] != d:
            raise DataError(f"{data.source}: the vector field has dim={d} but the data has {data.values.shape[1]} "
                            f"columns {data.state_names}; set vector_field.init_args.dim: {data.values.shape[1]}.")
        if self.coordinates == "log" and not bool((data.values > 0).all()):
            raise DataError(f"{data.source}: coordinates 'log' needs positive observations; use coordinates: natural.")
        if self.likelihood.support == "positive" and self.coordinates != "log":
            raise DataError(f"a {self.likelihood.family} likelihood needs coordinates: log (positive predictions).")
        base = data.values.log() if self.coordinates == "log" else data.values
        self._loc, self._scale = base.mean(0), base.std(0).clamp_min(1e-8)
        self.data = data

    def param_dims(self, name: str) -> tuple[str, ...]:
        if name not in self.weight_names and self.param_shape(name) == (self.vector_field.dim,):
            return ("state",)
        return super().param_dims(name)


    @property
    def weight_names(self) -> list[str]:
        return [n for pair in self.latent_layers.values() for n in pair]

    def standardise(self, z: Tensor) -> Tensor:
        """Data-unit states (*, D) -> the ODE's coordinates h."""
        base = z.log() if self.coordinates == "log" else z
        return (base - self._loc.to(z)) / self._scale.to(z)

    def field(self, params: dict[str, Tensor]) -> BatchedMLPField:
        """The vector field with the latent layers set to `params` (leading dims = draws)."""
        weights = dict(self._hidden or {})
        weights.update({i: (params[w], params[b]) for i, (w, b) in self.latent_layers.items()})
        return BatchedMLPField(self.vector_field, weights)

    @contextlib.contextmanager
    def hidden_weights(self, weights: dict[int, tuple[Tensor, Tensor]]):
        """Within the block, the non-latent Linear layers use `weights` (layer index -> (W (*batch, out, in),
        b (*batch, out))) instead of the field's own: batched multi-start MAP fits use this."""
        previous, self._hidden = self._hidden, weights
        try:
            yield self
        finally:
            self._hidden = previous

    def predict(self, params: dict[str, Tensor], x: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """z(t) (and log z(t) in log coordinates) at times x (default: the data's), shape (*batch, T, D)."""
        self._require_data()
        dtype = torch.get_default_dtype()
        times, grid, prepend = self._solve_grid(x, dtype)
        w_name = self.latent_layers[max(self.latent_layers)][0]
        batch = params[w_name].shape[: params[w_name].ndim - 2]
        if self._hidden:
            some = next(iter(self._hidden.values()))[0]
            batch = torch.broadcast_shapes(batch, some.shape[: some.ndim - 2])
        if self.initial_state is not None:
            h0 = self.standardise(params[self.initial_state])
        else:
            h0 = self.standardise(self.data.values[0].to(dtype))
        vf = self.field(params)
        h0 = vf.field.augment(h0.expand(*batch, self.vector_field.dim))
        sol = vf.field.project(solve_ode(vf, h0, grid, self.solver).y)  # (T', *batch, D)
        sol = sol[1: 1 + times.numel()] if prepend else sol[: times.numel()]
        base = self._loc.to(sol) + self._scale.to(sol) * sol.movedim(0, -2)
        if self.coordinates == "log":
            return torch.exp(base.clamp(max=80.0)), base
        return base, None
