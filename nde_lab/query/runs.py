"""The query logic behind `Run.sample/predict/log_prob/expect/prob/interval/quantile` (Run only delegates here).

Argument checks are the same for every family (counts, unknown keywords -> `QueryError` naming the
argument), and the draw source of a run decides the honest error: families whose `sample` resamples
stored posterior draws (Bayesian runs) get a `DrawSource` with the pool's effective size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import xarray as xr

from nde_lab.errors import QueryError
from nde_lab.query.args import check_count, check_keywords
from nde_lab.query.montecarlo import SIMULATION, DrawSource, expect, expect_draws, quantile
from nde_lab.query.montecarlo import interval as _interval
from nde_lab.query.montecarlo import prob as _prob

if TYPE_CHECKING:
    from nde_lab.store.reader import Run

__all__ = ["draw_source", "run_expect", "run_interval", "run_log_prob", "run_predict", "run_prob", "run_quantile", "run_sample"]

Statistic = Callable[[xr.Dataset], xr.DataArray]


def run_sample(run: Run, n: Any, **kwargs: Any) -> xr.Dataset:
    """`n` new draws from the run's family, after the shared argument checks."""
    n = check_count("n", n)
    model = run.model
    check_keywords("sample", type(model).query_sample, kwargs, extra=())
    return model.query_sample(run, n, **kwargs)


def run_predict(run: Run, times: Any, **kwargs: Any) -> xr.Dataset:
    model = run.model
    check_keywords("predict", type(model).query_predict, kwargs)
    if "n" in kwargs:
        kwargs["n"] = check_count("n", kwargs["n"])
    return model.query_predict(run, None if times is None else np.asarray(times, dtype=np.float64), **kwargs)


def run_log_prob(run: Run, x: Any, **kwargs: Any) -> xr.DataArray:
    model = run.model
    check_keywords("log_prob", type(model).query_log_prob, kwargs)
    return model.query_log_prob(run, np.asarray(x), **kwargs)


# ---- draw sources ----------------------------------------------------------------------------------
def _stored_kind(attrs: dict[str, Any]) -> str:
    method = str(attrs.get("method", ""))
    if "psis" in method:
        return "importance-resampled draws"
    if method.startswith("svi") or method == "laplace":
        return "stored variational draws"
    return "stored MCMC draws"


def _importance_limit(attrs: dict[str, Any], n_pool: int) -> float | None:
    """1 / (1/ESS_importance + 1/n): the effective size of n draws resampled from weighted proposals."""
    from nde_lab.prob.diagnostics import resampled_ess

    ess_is = attrs.get("ess_importance")
    return None if ess_is is None else resampled_ess(ess_is, n_pool)


def _resamples_stored_draws(run: Run) -> bool:
    return str(run.attrs.get("model_family", "")).startswith("bayes") and "posterior" in run.groups


def draw_source(run: Run, fn: Statistic | None = None) -> DrawSource:
    """The run's draw source; for stored posterior draws, their effective size for statistic `fn`."""
    if not _resamples_stored_draws(run):
        return SIMULATION
    post = run.posterior
    kind = _stored_kind(dict(post.attrs) | run.attrs)
    hint = ("For more precision refit with more draws (model.num_draws / model.num_chains; for importance "
            "resampling also more proposals), or use draws='posterior' to average every stored draw once.")
    if fn is None:
        return DrawSource(kind, None, hint)
    answer = expect_draws(post, fn, kind=kind, ess_limit=_importance_limit(dict(post.attrs) | run.attrs,
                                                                           post.sizes["chain"] * post.sizes["draw"]))
    return DrawSource(kind, answer["ess"], hint)


# ---- Monte Carlo queries ---------------------------------------------------------------------------
def _sampler(run: Run, sample_kwargs: dict[str, Any]) -> Callable[[int, int], xr.Dataset]:
    check_keywords("expect/prob/interval (sampling)", type(run.model).query_sample, {k: v for k, v in sample_kwargs.items()},
                   extra=())
    return lambda size, s: run_sample(run, size, seed=s, **sample_kwargs)


def run_expect(run: Run, fn: Statistic, *, n: Any = None, target_mcse: float | None = None,
               draws: Literal["sample", "posterior"] = "sample", batch: int = 1000, seed: int = 0,
               max_draws: int = 1_000_000, probability: bool = False, discretisation_error: bool = False,
               **sample_kwargs: Any) -> xr.Dataset:
    """E[fn(X)] (or P(fn(X)) with `probability`) with its honest error; see `Run.expect`.

    With `discretisation_error=True` (SDE runs) the answer also carries `discretisation_error`, the
    bias of the estimate from the solver's step, estimated by step halving (see `_step_halving`).
    """
    if discretisation_error and draws != "sample":
        raise QueryError("discretisation_error=True needs draws='sample' (fresh simulated paths).")
    if draws == "posterior":
        if n is not None or target_mcse is not None:
            raise QueryError("draws='posterior' uses every stored draw once; n and target_mcse do not apply.")
        if sample_kwargs:
            raise QueryError(f"draws='posterior' takes no sampling keywords, got {sorted(sample_kwargs)}.")
        source = draw_source(run)
        post = run.posterior
        limit = _importance_limit(dict(post.attrs) | run.attrs, post.sizes["chain"] * post.sizes["draw"])
        stat = (lambda ds: fn(ds).astype(np.float64)) if probability else fn
        return expect_draws(post, stat, kind=source.kind if source.kind != "simulation" else "stored MCMC draws", ess_limit=limit)
    if draws != "sample":
        raise QueryError(f"draws={draws!r} is not valid; must be one of 'sample', 'posterior'.")
    if n is None and target_mcse is None:
        n = 4000
    source = SIMULATION
    if _resamples_stored_draws(run):
        stat = (lambda ds: fn(ds).astype(np.float64)) if probability else fn
        source = draw_source(run, stat)
        pool = run.posterior.sizes["chain"] * run.posterior.sizes["draw"]
        batch = min(check_count("batch", batch, minimum=2), pool)
    sampler = _sampler(run, sample_kwargs)
    estimator = _prob if probability else expect
    answer = estimator(sampler, fn, n=n, target_mcse=target_mcse, batch=batch, seed=seed, max_draws=max_draws, source=source)
    if discretisation_error:
        answer = _step_halving(run, fn, answer, estimator, sample_kwargs, batch=batch, seed=seed)
    return answer


#: spawn key of the step-halving companion estimate's seed stream (apart from the batches' keys 0, 1, ...)
HALF_STEP_STREAM = 2**31


def _step_halving(run: Run, fn: Statistic, answer: xr.Dataset, estimator: Callable[..., xr.Dataset],
                  sample_kwargs: dict[str, Any], *, batch: int, seed: int) -> xr.Dataset:
    """`answer` plus its discretisation error, from a second estimate at half the step.

    For a method of weak order p, E_h = E + c h^p + o(h^p), so the bias of E_h is
    (E_h - E_{h/2}) / (1 - 2^-p); p = 1 (the weak order of every SDE method the lab offers, a bound
    for the higher ones). The half-step estimate uses as many draws from an independent seed stream
    (child `HALF_STEP_STREAM` of `SeedSequence(seed)`), so the error's own Monte Carlo error is
    sqrt(mcse_h^2 + mcse_{h/2}^2) / (1 - 2^-p). Exact transitions (OU, GBM) have none: 0 exactly.
    Adds `discretisation_error` and `discretisation_error_mcse` (same dims as `estimate`) and the
    attr `discretisation` (how it was obtained).
    """
    import inspect

    from nde_lab.query.seeds import child_seed

    step, method = float(answer.attrs.get("step", 0.0)), str(answer.attrs.get("method", ""))
    zero = xr.zeros_like(answer["estimate"], dtype=np.float64)
    if method == "exact" or step == 0.0:
        return answer.assign(discretisation_error=zero, discretisation_error_mcse=zero).assign_attrs(
            discretisation="none: exact transitions")
    if "dt" not in inspect.signature(type(run.model).query_sample).parameters:
        raise QueryError(f"discretisation_error=True: {run.attrs.get('model_family')} runs have no solver step to halve.")
    n_draws = int(answer.attrs["n_draws"])
    halved = {**sample_kwargs, "dt": step / 2}
    half = estimator(lambda size, s: run_sample(run, size, seed=s, **halved), fn, n=n_draws,
                     batch=batch, seed=child_seed(seed, HALF_STEP_STREAM), max_draws=n_draws)
    factor = 1.0 / (1.0 - 2.0**-1)
    error = (answer["estimate"] - half["estimate"]) * factor
    error_mcse = np.sqrt(answer["mcse"] ** 2 + half["mcse"] ** 2) * factor
    return answer.assign(discretisation_error=error, discretisation_error_mcse=error_mcse).assign_attrs(
        discretisation=f"step halving: {method} at step {step:g} against {step / 2:g}, {n_draws} draws each, weak order 1")


def run_prob(run: Run, event: Statistic, **kwargs: Any) -> xr.Dataset:
    """P(event(X)) with a Wilson interval; keywords as in `run_expect`."""
    return run_expect(run, event, probability=True, **kwargs)


def _pool_kwargs(run: Run, fn: Statistic, n: int, batch: int) -> tuple[DrawSource, int]:
    if not _resamples_stored_draws(run):
        return SIMULATION, batch
    pool = run.posterior.sizes["chain"] * run.posterior.sizes["draw"]
    return draw_source(run, fn), min(batch, pool)


def run_quantile(run: Run, fn: Statistic, q: float | list[float], *, n: Any = 4000, batch: int = 10_000, seed: int = 0,
                 **sample_kwargs: Any) -> xr.Dataset:
    """Quantiles of fn(X) over `n` draws with the MCSE of each; see `Run.quantile`."""
    n = check_count("n", n, minimum=10)
    source, batch = _pool_kwargs(run, fn, n, check_count("batch", batch, minimum=2))
    return quantile(_sampler(run, sample_kwargs), fn, q, n=n, batch=batch, seed=seed, source=source)


def run_interval(run: Run, fn: Statistic, *, level: float = 0.9, n: Any = 4000, batch: int = 10_000, seed: int = 0,
                 **sample_kwargs: Any) -> xr.Dataset:
    """Equal-tailed `level` interval of fn(X) with the MCSE of each end; see `Run.interval`."""
    n = check_count("n", n, minimum=10)
    source, batch = _pool_kwargs(run, fn, n, check_count("batch", batch, minimum=2))
    return _interval(_sampler(run, sample_kwargs), fn, level=level, n=n, batch=batch, seed=seed, source=source)

