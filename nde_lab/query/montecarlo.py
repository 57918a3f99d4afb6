"""Monte Carlo queries with an honest error: expectations, probabilities, quantiles and intervals.

Draws come in batches, each from its own child of `SeedSequence(seed)` (`nde_lab.query.seeds`),
and are reduced on the fly (Chan/Welford updates), so memory is bounded by one batch. Every answer is
the result type of `nde_lab.query.result` (`estimate`, `mcse`, `ci_lower`/`ci_upper`, `ess`,
`n_draws`, `converged`, provenance).

The error knows where the draws come from (`DrawSource`): fresh simulation is independent
(mcse = sd / sqrt(n)); draws resampled from a stored pool (posterior draws of a Bayesian run) can
never be more precise than the pool itself, whose effective size E is ArviZ's ESS for MCMC draws or
1 / (1/ESS_importance + 1/n_pool) for importance-resampled draws. Resampling n draws from such a
pool has mcse = sd sqrt(1/n + 1/E); a `target_mcse` below sd / sqrt(E) ends at once with
`converged=False` and a message saying how to get more.

Probabilities use the Wilson interval (valid with zero hits) and `target_mcse` never stops before
`MIN_HITS` hits and `MIN_HITS` misses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from nde_lab.query.args import check_count, check_positive
from nde_lab.query.result import Z95, mc_result, wilson_interval
from nde_lab.query.seeds import child_seeds

__all__ = ["MIN_HITS", "DrawSource", "Sampler", "expect", "expect_draws", "interval", "prob", "quantile", "quantile_mcse"]

#: draws(n, seed) -> Dataset with a leading "sample" dimension of length n.
Sampler = Callable[[int, int], xr.Dataset]
Statistic = Callable[[xr.Dataset], xr.DataArray]

#: `target_mcse` on a probability stops only after this many hits and this many misses: below it the
#: normal approximation behind any standard error is unreliable (and with zero hits it is 0 +/- 0).
MIN_HITS = 10


@dataclass(frozen=True)
class DrawSource:
    """Where a sampler's draws come from and how much information they carry.

    Attributes:
        kind: "simulation" (independent fresh draws), "stored MCMC draws" or "importance-resampled draws".
        pool_ess: effective size of the stored pool the draws are resampled from (scalar or per
            component of the statistic); None for simulation (unlimited).
        hint: how to get more precision when the pool is exhausted.
    """

    kind: str = "simulation"
    pool_ess: float | xr.DataArray | None = None
    hint: str = ""


SIMULATION = DrawSource()


def _as_sample_array(value: xr.DataArray | np.ndarray, n: int) -> xr.DataArray:
    array = value if isinstance(value, xr.DataArray) else xr.DataArray(np.asarray(value), dims=["sample", *[f"dim_{i}" for i in range(np.ndim(value) - 1)]])
    if "sample" not in array.dims or array.sizes["sample"] != n:
        raise ValueError(
            f"the statistic must return one value per draw along a 'sample' dimension of length {n}; "
            f"got dims {dict(array.sizes)}. Reduce over other dimensions inside the function, not over 'sample'."
        )
    array = array.astype(np.float64).transpose("sample", ...)
    return array.drop_vars([c for c in array.coords if "sample" in array[c].dims])


def _check_request(n: int | None, target_mcse: float | None, batch: int, max_draws: int) -> None:
    if (n is None) == (target_mcse is None):
        raise ValueError("give exactly one of n (a number of draws) or target_mcse (a precision).")
    if n is not None:
        check_count("n", n, minimum=2)
    if target_mcse is not None:
        check_positive("target_mcse", target_mcse)
    check_count("batch", batch, minimum=2)
    check_count("max_draws", max_draws, minimum=2)


def _provenance(ds: xr.Dataset, source: DrawSource) -> dict[str, object]:
    attrs = ds.attrs if isinstance(ds, xr.Dataset) else {}
    draws = source.kind if source.pool_ess is not None else str(attrs.get("draws", source.kind))
    return {"method": str(attrs.get("method", "")), "step": float(attrs.get("step", 0.0)), "draws": draws}


def _stream(draws: Sampler, fn: Statistic, *, n: int | None, target_mcse: float | None, batch: int, max_draws: int,
            seed: int, source: DrawSource, probability: bool) -> xr.Dataset:
    count, mean, m2 = 0, None, None
    provenance: dict[str, object] = {}
    pool = source.pool_ess
    seeds = child_seeds(seed)
    message = ""
    while True:
        size = batch if n is None else min(batch, n - count)
        ds = draws(size, next(seeds))
        if not provenance:
            provenance = _provenance(ds, source)
        values = _as_sample_array(fn(ds), size)
        if probability and not bool(((values == 0) | (values == 1)).all()):
            raise ValueError("prob(): the event must return booleans (or 0/1) per draw.")
        batch_mean = values.mean("sample")
        batch_m2 = ((values - batch_mean) ** 2).sum("sample")
        if mean is None:
            count, mean, m2 = size, batch_mean, batch_m2
        else:  # Chan et al.'s parallel update of mean and sum of squares
            delta = batch_mean - mean
            total = count + size
            mean = mean + delta * size / total
            m2 = m2 + batch_m2 + delta**2 * count * size / total
            count = total
        ess = xr.full_like(mean, float(count)) if pool is None else 1.0 / (1.0 / count + 1.0 / pool)
        var = m2 / (count - 1)
        if probability:
            hits = mean * count
            lo, hi = wilson_interval(hits, ess)
            # p(1-p)/ess, floored by the Wilson width so zero hits never reads as zero error
            mcse = np.maximum(np.sqrt(mean * (1 - mean) / ess), (hi - lo) / (2 * Z95))
        else:
            mcse = np.sqrt(var / ess)
        if n is not None and count >= n:
            converged = True
            break
        if target_mcse is not None:
            enough_hits = not probability or bool(((hits >= MIN_HITS) & (count - hits >= MIN_HITS)).all())
            if enough_hits and bool((mcse <= target_mcse).all()):
                converged = True
                break
            if pool is not None:
                floor = np.sqrt(var / pool)
                if bool((floor > target_mcse).any()):
                    converged = False
                    message = (
                        f"target_mcse={target_mcse:g} is below what the {source.kind} carry: their effective size "
                        f"{float(np.min(pool)):.0f} limits the error to sd/sqrt(ESS) = {float(floor.max()):.3g}, and "
                        f"resampling them again adds nothing. {source.hint}".strip()
                    )
                    break
        if count >= max_draws:
            converged = False
            message = f"max_draws={max_draws} reached before target_mcse={target_mcse:g}; raise max_draws."
            break
    ci = wilson_interval(mean * count, ess) if probability else None
    ci = None if ci is None else (mean.copy(data=np.asarray(ci[0])), mean.copy(data=np.asarray(ci[1])))
    what = "Wilson interval; mcse = sqrt(p(1-p)/ess)" if probability else "mcse = sd / sqrt(ess)"
    extra = {"sd": np.sqrt(var)}
    if probability:
        extra["hits"] = mean * count
    return mc_result(mean, mcse, n_draws=count, ess=ess, converged=converged, ci=ci, target_mcse=target_mcse,
                     message=message, seed=seed, extra=extra,
                     attrs={"estimator": f"{'probability' if probability else 'mean'} over {source.kind}; {what}"},
                     **provenance)


def expect(
    draws: Sampler,
    fn: Statistic,
    *,
    n: int | None = None,
    target_mcse: float | None = None,
    batch: int = 1000,
    max_draws: int = 1_000_000,
    seed: int = 0,
    source: DrawSource = SIMULATION,
) -> xr.Dataset:
    """E[fn(X)] over draws X, with its Monte Carlo standard error.

    Main arguments:
        draws: a sampler `draws(n, seed)` returning a Dataset with dim "sample" (e.g. `run.sample`);
            its attrs `method`, `step`, `draws` become the answer's provenance.
        fn: maps a batch of draws to a DataArray with dim "sample" (and any other dims).
        n: number of draws; or
        target_mcse: draw until every component's MCSE is at most this (at least `batch` draws).

    Other arguments:
        batch: draws per batch (memory is bounded by one batch); batch b is seeded by child b of
            `SeedSequence(seed)`.
        max_draws: give up (with the estimate so far, `converged=False`) past this many.
        seed: the root seed.
        source: where the draws come from (`DrawSource`); default independent simulation.

    Returns:
        The Monte Carlo result (`nde_lab.query.result`), plus `sd` of fn.
    """
    _check_request(n, target_mcse, batch, max_draws)
    return _stream(draws, fn, n=n, target_mcse=target_mcse, batch=batch, max_draws=max_draws, seed=seed,
                   source=source, probability=False)


def prob(draws: Sampler, event: Callable[[xr.Dataset], xr.DataArray], **kwargs) -> xr.Dataset:
    """P(event(X)) with a Wilson 95% interval (valid at zero hits); keywords as in `expect`.

    With `target_mcse` it draws until the error is small enough *and* at least `MIN_HITS` hits and
    `MIN_HITS` misses were seen, so a rare event is never answered 0 +/- 0.
    """
    _check_request(kwargs.get("n"), kwargs.get("target_mcse"), kwargs.get("batch", 1000), kwargs.get("max_draws", 1_000_000))
    defaults = {"n": None, "target_mcse": None, "batch": 1000, "max_draws": 1_000_000, "seed": 0, "source": SIMULATION}
    unknown = set(kwargs) - set(defaults)
    if unknown:
        from nde_lab.errors import QueryError

        raise QueryError(f"prob() got unknown keyword argument(s) {sorted(unknown)}; it takes {sorted(defaults)}.")
    return _stream(draws, lambda ds: event(ds).astype(np.float64), probability=True, **{**defaults, **kwargs})


def _ess_per_component(values: xr.DataArray, ess_fn: Callable[[np.ndarray], float]) -> xr.DataArray:
    """ess_fn over (chain, draw) for every component of `values` (chain, draw, ...)."""
    other = [d for d in values.dims if d not in ("chain", "draw")]
    flat = values.transpose("chain", "draw", *other).values.reshape(values.sizes["chain"], values.sizes["draw"], -1)
    ess = np.array([ess_fn(flat[:, :, k]) for k in range(flat.shape[-1])]).reshape([values.sizes[d] for d in other])
    template = values.isel(chain=0, draw=0, drop=True)
    return template.copy(data=ess)


def stored_values(samples: xr.Dataset, fn: Statistic) -> xr.DataArray:
    """fn over stored draws (chain, draw, ...): fn sees them stacked along "sample"; returns (chain, draw, ...)."""
    if "chain" not in samples.dims or "draw" not in samples.dims:
        raise ValueError(f"stored draws need dims ('chain', 'draw'); got {dict(samples.sizes)}.")
    stacked = samples.stack(sample=("chain", "draw")).transpose("sample", ...)
    n = stacked.sizes["sample"]
    values = fn(stacked)
    if not isinstance(values, xr.DataArray) or "sample" not in values.dims or values.sizes["sample"] != n:
        _as_sample_array(values, n)  # raises the usual message
    return values.astype(np.float64).unstack("sample").transpose("chain", "draw", ...)


def expect_draws(samples: xr.Dataset, fn: Statistic, *, kind: str = "stored MCMC draws",
                 ess_limit: float | None = None) -> xr.Dataset:
    """E[fn(theta)] over every stored draw (chain, draw): mcse = sd / sqrt(ESS).

    ESS is ArviZ's ESS for the mean (`nde_lab.prob.diagnostics.ess_mean`), capped at `ess_limit`
    (for importance-resampled draws, 1 / (1/ESS_importance + 1/n): resampling cannot add information).
    """
    from nde_lab.prob.diagnostics import ess_mean

    values = stored_values(samples, fn)
    n = values.sizes["chain"] * values.sizes["draw"]
    ess = _ess_per_component(values, ess_mean)
    if ess_limit is not None:
        ess = np.minimum(ess, ess_limit)
    mean = values.mean(("chain", "draw"))
    sd = values.std(("chain", "draw"), ddof=1)
    return mc_result(mean, sd / np.sqrt(ess), n_draws=n, ess=ess, draws=kind, method="stored draws", extra={"sd": sd},
                     attrs={"estimator": f"mean over {kind}; mcse = sd / sqrt(ess) (ArviZ's ESS for the mean)"})


def quantile_mcse(x: np.ndarray, p: float, ess: float) -> tuple[float, float, float, float]:
    """Quantile q_p of 1-D draws with its error from `ess` effective draws (distribution-free).

    The empirical quantiles at p -/+ 1.96 sqrt(p (1 - p) / ess) bracket q_p with ~95% probability
    (ArviZ's approach for quantile MCSE), so mcse ~ (upper - lower) / 3.92.

    Returns:
        (estimate, mcse, ci_lower, ci_upper).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    half = Z95 * math.sqrt(p * (1 - p) / max(ess, 1.0))
    lo, hi = np.quantile(x, [max(p - half, 0.0), min(p + half, 1.0)])
    return float(np.quantile(x, p)), float((hi - lo) / (2 * Z95)), float(lo), float(hi)


def quantile_result(values: xr.DataArray, probs: list[float], *, ess: xr.DataArray | float | None = None,
                    dims: tuple[str, ...] = ("sample",), **provenance: object) -> xr.Dataset:
    """Quantiles of `values` over `dims` as a Monte Carlo result with a `quantile` dim.

    `ess`: effective size per component (default: the number of draws, i.e. independent draws).
    """
    stacked = values.stack(_flat=dims) if len(dims) > 1 else values.rename({dims[0]: "_flat"})
    stacked = stacked.transpose("_flat", ...)
    n = stacked.sizes["_flat"]
    other = [d for d in stacked.dims if d != "_flat"]
    flat = stacked.values.reshape(n, -1)
    ess_flat = np.broadcast_to(np.asarray(n if ess is None else (ess.transpose(*other).values if isinstance(ess, xr.DataArray) else ess),
                                          dtype=float), [stacked.sizes[d] for d in other]).reshape(-1)
    if np.all(ess_flat == ess_flat[0]):  # one effective size: every component in one vectorised call
        half = [Z95 * math.sqrt(p * (1 - p) / max(ess_flat[0], 1.0)) for p in probs]
        levels = [v for p, h in zip(probs, half, strict=True) for v in (p, max(p - h, 0.0), min(p + h, 1.0))]
        qs = np.quantile(flat, levels, axis=0).reshape(len(probs), 3, -1)
        rows = np.stack([qs[:, 0], (qs[:, 2] - qs[:, 1]) / (2 * Z95), qs[:, 1], qs[:, 2]], axis=-1)
    else:
        rows = np.array([[quantile_mcse(flat[:, k], p, ess_flat[k]) for k in range(flat.shape[1])] for p in probs])
    shape = [len(probs), *[stacked.sizes[d] for d in other]]
    coords = {d: values[d] for d in other if d in values.coords}
    template = xr.DataArray(np.zeros(shape), dims=["quantile", *other], coords={"quantile": list(probs), **coords})
    parts = [template.copy(data=rows[..., i].reshape(shape)) for i in range(4)]
    ess_da = template.copy(data=np.broadcast_to(ess_flat.reshape(shape[1:]), shape).copy())
    return mc_result(parts[0], parts[1], n_draws=n, ess=ess_da, ci=(parts[2], parts[3]),
                     attrs={"estimator": "empirical quantile; mcse from the order-statistic bracket at p -/+ 1.96 sqrt(p(1-p)/ess)"},
                     **provenance)


def quantile(draws: Sampler, fn: Statistic, q: float | list[float], *, n: int = 4000, batch: int = 10_000,
             seed: int = 0, source: DrawSource = SIMULATION) -> xr.Dataset:
    """Quantile(s) `q` of fn(X) over `n` draws (streamed in batches; only fn's values are kept)."""
    probs = [float(v) for v in np.atleast_1d(q)]
    if not all(0 < p < 1 for p in probs):
        raise ValueError(f"quantile levels must lie in (0, 1), got {probs}.")
    n = check_count("n", n, minimum=10)
    batch = check_count("batch", batch, minimum=2)
    parts, provenance, count = [], {}, 0
    seeds = child_seeds(seed)
    while count < n:
        size = min(batch, n - count)
        ds = draws(size, next(seeds))
        provenance = provenance or _provenance(ds, source)
        parts.append(_as_sample_array(fn(ds), size))
        count += size
    values = xr.concat(parts, dim="sample")
    ess = None if source.pool_ess is None else 1.0 / (1.0 / n + 1.0 / source.pool_ess)
    return quantile_result(values, probs, ess=ess, seed=seed, **provenance)


def interval(draws: Sampler, fn: Statistic, *, level: float = 0.9, **kwargs) -> xr.Dataset:
    """Equal-tailed `level` interval of fn(X): the quantile result at (1 -/+ level) / 2 with `lower`/`upper`."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")
    out = quantile(draws, fn, [(1 - level) / 2, (1 + level) / 2], **kwargs)
    out["lower"] = out["estimate"].isel(quantile=0, drop=True)
    out["upper"] = out["estimate"].isel(quantile=1, drop=True)
    return out.assign_attrs(level=level)
