"""`ODEProgram`: Bayesian inference for any mechanistic ODE a recipe names.

The recipe names a `MechanisticField` (a built-in by short name, or any class path under the import
allow-list), gives priors for its parameters (or fixes some as constants), its constants, its
time-dependent inputs, its initial state and time, an observation model from states to data columns
and a likelihood. Prediction, posterior predictive and the query API then work for the model without
code beyond the field.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from nde_lab.dynamics.mechanistic import Input, MechanisticField
from nde_lab.errors import DataError, RecipeError
from nde_lab.prob.data import SeriesData
from nde_lab.prob.distributions import Prior, check_positive_prior
from nde_lab.prob.likelihoods import Likelihood
from nde_lab.prob.observation import Column, ObservationModel
from nde_lab.prob.programs import SeriesProgram
from nde_lab.safety.imports import check_import_path
from nde_lab.solvers.ode import ODEMethod, ODESolverOptions, solve_ode

__all__ = ["BUILTIN_FIELDS", "ODEProgram", "resolve_field"]

#: short names of the built-in fields (nde_lab/dynamics/classic.py); anything else is a class path
BUILTIN_FIELDS: dict[str, str] = {
    "lotka_volterra": "nde_lab.dynamics.classic.LotkaVolterra",
    "logistic": "nde_lab.dynamics.classic.LogisticGrowth",
    "sir": "nde_lab.dynamics.classic.SIR",
    "seir": "nde_lab.dynamics.classic.SEIR",
    "damped_oscillator": "nde_lab.dynamics.classic.DampedOscillator",
}

InitialValue = float | str


def resolve_field(dynamics: str) -> type[MechanisticField]:
    """The field class for a built-in name or a class path (checked against the import allow-list
    before anything is imported)."""
    path = BUILTIN_FIELDS.get(dynamics, dynamics)
    if not isinstance(path, str) or "." not in path:
        raise RecipeError(f"dynamics: {dynamics!r} is neither a built-in model {sorted(BUILTIN_FIELDS)} nor a class "
                          "path 'package.module.Class' of a nde_lab.dynamics.MechanisticField.")
    check_import_path(path)
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise RecipeError(f"dynamics: cannot import {path!r} ({err}); is its module on the Python path?") from err
    if not (isinstance(cls, type) and issubclass(cls, MechanisticField)):
        raise RecipeError(f"dynamics: {path!r} is not a subclass of nde_lab.dynamics.MechanisticField.")
    return cls


class ODEProgram(SeriesProgram):
    """A Bayesian mechanistic ODE: parameters with priors, known constants and inputs, an initial state,
    an observation model and a likelihood.

    Main arguments:
        priors: name -> Prior for every inferred quantity: the field's parameters not fixed in
            `constants`, parameters named by `initial_state` or `observation`, and the likelihood's noise.
        likelihood: observation family and the names of its noise parameters.
        dynamics: the field: a built-in short name (`BUILTIN_FIELDS`: "lotka_volterra", "logistic",
            "sir", "seir", "damped_oscillator") or a class path of a `MechanisticField` subclass (the
            user's module must be allowed: `allow_import` / `--allow_import`).
        constants: name -> number for the field's constants (e.g. N) and for any field parameter to
            hold fixed instead of inferring it.
        initial_state: z(t0): the name of a parameter of shape [D]; or D entries (a list in state order,
            or a mapping state -> entry), each a number or the name of a scalar parameter or constant;
            or omitted when the field computes it (`MechanisticField.initial`).
        t0: the initial time (default: the first observation time); observations start at or after it.
        inputs: name -> {times, values, kind: step|linear}: time-dependent inputs the field reads;
            their change times are breakpoints of the solve.
        observation: observed column -> {states: [...], scale: number or parameter, transform:
            identity|log}, in any order (matched to the data's columns by name). Default: every state
            is observed as it is (the data has D columns, in state order).

    Other arguments:
        method, step_size, rtol, atol, max_num_steps, per_draw, breakpoints, compile: the solve
            (`nde_lab.solvers.ODESolverOptions`): e.g. `method: lsoda` (scipy, forward sensitivities; stiff
            models, cheap exact gradients for NUTS), `per_draw: true` (each draw its own adaptive step, stiff
            draws handed to LSODA); the field's input change times are always breakpoints.
        coordinates: "log" integrates log-states (positive models only; stays positive under any step);
            "natural" the states themselves. Default: "log" for models declared positive.
    """

    def __init__(
        self,
        *,
        priors: dict[str, Prior],
        likelihood: Likelihood,
        dynamics: str = "lotka_volterra",
        constants: dict[str, float] | None = None,
        initial_state: str | list[InitialValue] | dict[str, InitialValue] | None = "z_init",
        t0: float | None = None,
        inputs: dict[str, dict[str, Any]] | None = None,
        observation: dict[str, Column] | None = None,
        method: ODEMethod = "rk4",
        step_size: float | None = 0.1,
        rtol: float = 1e-6,
        atol: float = 1e-8,
        max_num_steps: int = 10_000,
        per_draw: bool = False,
        breakpoints: list[float] | None = None,
        compile: bool = False,
        coordinates: Literal["natural", "log"] | None = None,
    ) -> None:
        self.dynamics = dynamics
        self.field_class = resolve_field(dynamics)
        fc = self.field_class
        self.states = list(fc.states)
        self.dim = len(self.states)
        self.constants = self._check_constants(constants or {})
        self.fixed_parameters = [p for p in fc.parameters if p in self.constants]
        self.coordinates = coordinates or ("log" if fc.positive else "natural")
        if self.coordinates not in ("natural", "log"):
            raise RecipeError(f"coordinates must be 'natural' or 'log', got {coordinates!r}.")
        if self.coordinates == "log" and not fc.positive:
            raise RecipeError(f"coordinates: 'log' needs a model whose states stay positive; {fc.__name__} is not "
                              "declared positive (positive = True). Use coordinates: natural.")
        self.t0 = None if t0 is None else float(t0)
        self.inputs = self._check_inputs(inputs or {})
        self.initial_state = self._check_initial(initial_state)
        self.observation = ObservationModel(observation, self.states)
        self.solver = ODESolverOptions(method=method, step_size=step_size, rtol=rtol, atol=atol,
                                       max_num_steps=max_num_steps, per_draw=per_draw, breakpoints=breakpoints,
                                       compile=compile)
        needed = [p for p in fc.parameters if p not in self.constants] + self._initial_parameters()
        needed += [s for s in self.observation.scale_parameters if s not in needed]
        super().__init__(priors=priors, likelihood=likelihood, required=needed)
        for name in [p for p in fc.parameters if p not in self.constants] + [n for n in needed if n != initial_state
                                                                               and n not in fc.parameters]:
            if self.param_shape(name) != ():
                raise RecipeError(f"priors.{name}: {name!r} enters the model as a scalar, got shape {list(self.param_shape(name))}.")
        if isinstance(self.initial_state, str) and self.param_shape(self.initial_state) != (self.dim,):
            raise RecipeError(f"priors.{self.initial_state}: the initial state of {fc.__name__} needs shape [{self.dim}] "
                              f"(states {self.states}), got {list(self.param_shape(self.initial_state))}.")
        for name in self.observation.scale_parameters:
            check_positive_prior(self.priors[name], f"priors.{name}", "an observation scale")

    # ---- recipe validation ---------------------------------------------------------------------------------
    def _check_constants(self, constants: Mapping[str, float]) -> dict[str, float]:
        fc = self.field_class
        allowed = set(fc.constants) | set(fc.parameters)
        out = {}
        for name, value in constants.items():
            if name not in allowed and name not in self.states:
                raise RecipeError(f"constants.{name}: {fc.__name__} has constants {list(fc.constants)} and parameters "
                                  f"{list(fc.parameters)}; {name!r} is neither.")
            try:
                out[name] = float(value)
            except (TypeError, ValueError) as err:
                raise RecipeError(f"constants.{name} must be a number, got {value!r}.") from err
        missing = [c for c in fc.constants if c not in out]
        if missing:
            raise RecipeError(f"constants: {fc.__name__} needs {missing} (known numbers, e.g. constants: "
                              f"{{{missing[0]}: ...}}).")
        return out

    def _check_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Input]:
        out = {}
        for name, spec in inputs.items():
            if name in self.field_class.parameters or name in self.constants:
                raise RecipeError(f"inputs.{name}: the name is already a parameter or constant of the model.")
            if isinstance(spec, Input):
                out[name] = spec
                continue
            if not isinstance(spec, Mapping) or set(spec) - {"times", "values", "kind"} or not {"times", "values"} <= set(spec):
                raise RecipeError(f"inputs.{name}: expected {{times: [...], values: [...], kind: step|linear}}, got {spec!r}.")
            try:
                out[name] = Input(**spec)
            except ValueError as err:
                raise RecipeError(f"inputs.{name}: {err}") from err
        return out

    def _check_initial(self, initial: Any) -> str | list[InitialValue] | None:
        fc = self.field_class
        if initial is None:
            if fc.initial is MechanisticField.initial:
                raise RecipeError(f"initial_state: {fc.__name__} does not compute its initial state; give initial_state "
                                  f"(a parameter of shape [{self.dim}], or one entry per state {self.states}).")
            return None
        if isinstance(initial, str):
            return initial
        if isinstance(initial, Mapping):
            missing = [s for s in self.states if s not in initial]
            extra = [s for s in initial if s not in self.states]
            if missing or extra:
                raise RecipeError(f"initial_state: give one entry per state {self.states}; missing {missing}, unknown {extra}.")
            initial = [initial[s] for s in self.states]
        entries = list(initial)
        if len(entries) != self.dim:
            raise RecipeError(f"initial_state: {fc.__name__} has {self.dim} state(s) {self.states}, got {entries}.")
        for state, entry in zip(self.states, entries, strict=True):
            if not isinstance(entry, (int, float, str)) or isinstance(entry, bool):
                raise RecipeError(f"initial_state.{state}: a number or a parameter/constant name, got {entry!r}.")
            if self.coordinates == "log" and not isinstance(entry, str) and not entry > 0:
                raise RecipeError(f"initial_state.{state}={entry!r}: log coordinates need a positive initial state.")
        return [float(e) if not isinstance(e, str) else e for e in entries]

    def _initial_parameters(self) -> list[str]:
        if isinstance(self.initial_state, str):
            return [self.initial_state]
        if self.initial_state is None:
            return []
        return [e for e in self.initial_state if isinstance(e, str) and e not in self.constants]

    # ---- data ---------------------------------------------------------------------------------------------------
    def bind(self, data: SeriesData) -> None:
        if not isinstance(data, SeriesData):
            raise DataError(f"ODEProgram needs SeriesData (times, values), got {type(data).__name__}.")
        columns = list(data.state_names)
        if self.observation.identity:
            d = self.dim
            if data.values.shape[1] != d:
                raise DataError(
                    f"{data.source}: the {self.dynamics} model observes {d} {'state' if d == 1 else 'states'}, but the data has "
                    f"{data.values.shape[1]} columns {columns}; give values of shape (T, {d}), or an observation "
                    "model (observation: {column: {states: [...]}}) for the columns you have."
                )
        else:
            if sorted(columns) != sorted(self.observation.names):
                raise DataError(f"{data.source}: the data's columns {columns} must be the observation model's columns "
                                f"{self.observation.names}.")
            self.observation.columns = {c: self.observation.columns[c] for c in columns}
        c = len(columns)
        for name in self.likelihood.noise_parameters:
            shape = self.param_shape(name)
            if shape not in {(), (c,)}:
                raise DataError(f"priors.{name}: a noise parameter must have shape [] or [{c}] (one per column), got {list(shape)}.")
        values = data.values
        if self.likelihood.support == "positive" and not bool((values > 0).all()):
            raise DataError(f"{data.source}: a {self.likelihood.family} likelihood needs positive observations.")
        if self.likelihood.support == "count" and not bool(((values >= 0) & (values == values.round())).all()):
            raise DataError(f"{data.source}: a {self.likelihood.family} likelihood needs non-negative integer counts.")
        if self.likelihood.family == "Binomial" and bool((values > self.likelihood.total_count).any()):
            raise DataError(f"{data.source}: a Binomial likelihood with total_count={self.likelihood.total_count} needs "
                            "counts no larger than that.")
        if self.t0 is not None and self.t0 > float(data.times[0]):
            raise DataError(f"t0={self.t0:g} is after the first observation time {float(data.times[0]):g}; "
                            "the initial time must come first.")
        self.data = data

    def param_dims(self, name: str) -> tuple[str, ...]:
        if self.data is not None and self.param_shape(name) == (len(self.data.state_names),):
            return ("state",)
        return super().param_dims(name)

    # ---- the model ------------------------------------------------------------------------------------------------
    def _theta(self, params: Mapping[str, Tensor]) -> Tensor:
        """theta (*batch, P) in the field's parameter order, fixed parameters filled in."""
        batch = self._batch_shape(params)
        dtype = torch.get_default_dtype()
        cols = [params[p].expand(batch) if p not in self.constants else torch.full(batch, self.constants[p], dtype=dtype)
                for p in self.field_class.parameters]
        if not cols:
            return torch.zeros(*batch, 0, dtype=dtype)
        return torch.stack(cols, dim=-1)

    def _batch_shape(self, params: Mapping[str, Tensor]) -> torch.Size:
        shapes = []
        for name in self.priors:
            if name in params:
                event = len(self.param_shape(name))
                shapes.append(params[name].shape[: params[name].ndim - event])
        return torch.broadcast_shapes(*shapes) if shapes else torch.Size()

    def make_field(self, params: Mapping[str, Tensor]) -> MechanisticField:
        """The field with these parameter values (theta (*batch, P)), constants and inputs."""
        field_constants = {k: v for k, v in self.constants.items() if k in self.field_class.constants}
        return self.field_class(self._theta(params), constants=field_constants, inputs=self.inputs,
                                coordinates=self.coordinates)

    def initial(self, params: Mapping[str, Tensor], field: MechanisticField | None = None) -> Tensor:
        """z(t0) in natural units, shape (*batch, D)."""
        batch = self._batch_shape(params)
        dtype = torch.get_default_dtype()
        if isinstance(self.initial_state, str):
            return params[self.initial_state].expand(*batch, self.dim)
        if self.initial_state is None:
            field = field or self.make_field(params)
            t0 = torch.as_tensor(self._t0(dtype), dtype=dtype)
            return field.initial(field.values(t0, field.theta)).expand(*batch, self.dim)
        entries = []
        for entry in self.initial_state:
            if isinstance(entry, str):
                value = torch.full(batch, self.constants[entry], dtype=dtype) if entry in self.constants else params[entry].expand(batch)
            else:
                value = torch.full(batch, entry, dtype=dtype)
            entries.append(value)
        return torch.stack(entries, dim=-1)

    def _t0(self, dtype: torch.dtype) -> float:
        self._require_data()
        return float(self.data.times[0]) if self.t0 is None else self.t0

    def predict_states(self, params: dict[str, Tensor], x: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Every state z(t) (natural units) and log z(t) when exact (log coordinates), shape (*batch, T, D)."""
        dtype = torch.get_default_dtype()
        times, grid, prepend = self._solve_grid(x, dtype, t0=self._t0(dtype))
        field = self.make_field(params)
        z0 = self.initial(params, field)
        y0 = field.to_solve(z0)
        batch = torch.broadcast_shapes(field.batch_shape, y0.shape[:-1])
        sol = solve_ode(field, y0.expand(*batch, self.dim), grid, self.solver).y  # (T', *batch, D)
        sol = sol[1: 1 + times.numel()] if prepend else sol[: times.numel()]
        sol = sol.movedim(0, -2)
        if self.coordinates == "log":
            return field.from_solve(sol), sol
        return sol, None

    def predict(self, params: dict[str, Tensor], x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The observed columns z(t) and log z(t) at times x (default: the data's), shape (*batch, T, C)."""
        z, log_z = self.predict_states(params, x)
        tiny = torch.finfo(z.dtype).tiny
        if log_z is None and self.observation.identity:
            log_z = torch.log(z.clamp_min(tiny))
        cols, log_cols = self.observation(z, log_z, params)
        if self.likelihood.support == "count" and self.likelihood.family != "Binomial":
            cols = cols.clamp_min(tiny)  # a rate: a solve that rounds a vanishing compartment below 0
        if log_cols is None:
            log_cols = torch.log(cols.clamp_min(tiny))
        return cols, log_cols
