"""Scaffolding shared by the long NUTS references (benchmarks/*_reference.py).

Each reference writes its model a second time, independently of `nde_lab.prob`, as a numpy (or
closed-form torch) log-density in unconstrained coordinates u, and samples it with Pyro's NUTS (dense
mass matrix) in a few independent chains, one process per job. What they share lives here:

- `NumpyPotential`: U(u) = -log p(u) as a torch scalar whose backward is the model's analytic gradient,
  for a model object with `log_density(u: (P,) ndarray) -> (float, (P,) ndarray)`;
- `laplace_mode`: the MAP in u by L-BFGS from jittered starts and the Laplace covariance there (chains
  start from over-dispersed draws of it);
- `run_nuts`: one seeded NUTS chain from a given start, with its diagnostics; `laplace_chain`: one from an
  over-dispersed Laplace draw;
- `run_chains`: the chains, serially or in a spawned process pool;
- `moment_summary` / `quantile_summary` / `full_summary` / `summarise_draws`: per-scalar summaries with their
  Monte Carlo errors; `print_summary`: their table;
- `reference_parser` / `run_record` / `write_record`: the command line and the JSON record.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

__all__ = ["NumpyPotential", "full_summary", "laplace_chain", "laplace_mode", "moment_summary", "print_summary",
           "quantile_summary", "reference_parser", "run_chains", "run_nuts", "run_record", "summarise_draws",
           "write_record"]


class NumpyModel(Protocol):
    n_evals: int  # log-density evaluations so far

    def log_density(self, u: np.ndarray) -> tuple[float, np.ndarray]: ...


class NumpyPotential(torch.autograd.Function):
    """U(u) = -log p as a torch scalar whose backward is the analytic gradient (for Pyro's `potential_fn`).

    `model.log_density(u)` returns (log p, d log p / du) for u (P,); a non-finite log p becomes U = inf.
    """

    @staticmethod
    def forward(ctx, u: torch.Tensor, model: NumpyModel) -> torch.Tensor:  # type: ignore[override]
        lp, grad = model.log_density(u.detach().cpu().numpy())
        ctx.save_for_backward(torch.as_tensor(-grad, dtype=u.dtype))
        return torch.as_tensor(-lp if math.isfinite(lp) else math.inf, dtype=u.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (g,) = ctx.saved_tensors
        return grad_out * g, None


def laplace_mode(model: NumpyModel, center: np.ndarray, *, seed: int = 0, starts: int = 8, spread: float = 0.3,
                 step: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """MAP in u (P,) by L-BFGS from `starts` points center + N(0, spread^2), and the Laplace covariance (P, P):
    the inverse of minus the Hessian of log p, by central differences (`step`) of the analytic gradient."""
    from scipy import optimize

    rng = np.random.default_rng(seed)
    center = np.asarray(center, dtype=float)
    best = None
    for _ in range(starts):
        u0 = center + rng.normal(0, spread, center.size)
        res = optimize.minimize(lambda u: tuple(-x for x in model.log_density(u)), u0, jac=True, method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    u_map = best.x
    hess = np.stack([(model.log_density(u_map + step * e)[1] - model.log_density(u_map - step * e)[1]) / (2 * step)
                     for e in np.eye(center.size)])
    cov = np.linalg.inv(-0.5 * (hess + hess.T))
    return u_map, 0.5 * (cov + cov.T)


def run_nuts(potential: Callable[[torch.Tensor], torch.Tensor], u_init: np.ndarray, *, seed: int, warmup: int,
             draws: int, target_accept: float, max_tree_depth: int = 10) -> dict[str, Any]:
    """One Pyro NUTS chain (dense mass matrix) on `potential(u)` from `u_init` (P,), Pyro seeded with `seed`.

    Returns u (draws, P), seconds, divergences (count in the sampling phase), accepted_fraction (Pyro's
    "acceptance rate" diagnostic) and the adapted step_size.
    """
    import pyro
    from pyro.infer import MCMC, NUTS

    pyro.set_rng_seed(seed)
    kernel = NUTS(potential_fn=lambda p: potential(p["u"]), full_mass=True, target_accept_prob=target_accept,
                  max_tree_depth=max_tree_depth)
    mcmc = MCMC(kernel, num_samples=draws, warmup_steps=warmup, initial_params={"u": torch.as_tensor(u_init)},
                disable_progbar=True)
    start = time.perf_counter()
    mcmc.run()
    seconds = time.perf_counter() - start
    diag = mcmc.diagnostics()
    return {"u": mcmc.get_samples()["u"].numpy(), "seconds": seconds,
            "divergences": len(diag["divergences"]["chain 0"]),
            "accepted_fraction": float(diag["acceptance rate"]["chain 0"]), "step_size": float(kernel.step_size)}


def laplace_chain(model: NumpyModel, u_map: np.ndarray, cov: np.ndarray, *, chain: int, seed: int, warmup: int,
                  draws: int, target_accept: float) -> dict[str, Any]:
    """One chain of `run_nuts` on `model`'s potential (one torch thread, float64), started at an over-dispersed
    Laplace draw u_map + N(0, 4 cov) (2x the Laplace sd, so R-hat can see chains that never mix), from its own
    seeded generator; `run_nuts`'s record plus `gradient_evaluations` (the model's `n_evals`)."""
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    u_init = np.random.default_rng(seed + 1000 * chain).multivariate_normal(u_map, 4.0 * cov)
    out = run_nuts(lambda u: NumpyPotential.apply(u, model), u_init, seed=seed + chain, warmup=warmup, draws=draws,
                   target_accept=target_accept)
    return {**out, "gradient_evaluations": model.n_evals}


def run_chains(worker: Callable[[Any], dict], jobs: Sequence[Any], processes: int) -> list[dict]:
    """`worker(job)` for every job: in a spawned pool of `processes` when > 1 (the worker must be a module-level
    function of an importable module), else serially in this process."""
    if processes > 1:
        with mp.get_context("spawn").Pool(processes) as pool:
            return pool.map(worker, jobs)
    return [worker(j) for j in jobs]


def _ess_mean(x: np.ndarray) -> float:
    from nde_lab.prob.diagnostics import _ess, _split

    return _ess(_split(x))


def moment_summary(x: np.ndarray) -> dict[str, float]:
    """Draws x (chain, draw) of one scalar -> mean, sd, mcse_mean, mcse_sd, ess_bulk, ess_mean, r_hat.

    mcse_mean = sd / sqrt(ess_mean); mcse_sd by the delta method on the variance with the ESS of the
    squared deviations (as ArviZ does): sqrt(var((x - m)^2) / ess_sq) / (2 sd). ESS and R-hat are the lab's
    (rank-normalised split R-hat, Vehtari et al. 2021).
    """
    from nde_lab.prob.diagnostics import ess_bulk, rhat

    mean, sd = float(x.mean()), float(x.std(ddof=1))
    ess_m = _ess_mean(x)
    dev2 = (x - mean) ** 2
    mcse_sd = math.sqrt(float(dev2.var(ddof=1)) / _ess_mean(dev2)) / (2 * sd)
    return {"mean": mean, "sd": sd, "mcse_mean": sd / math.sqrt(ess_m), "mcse_sd": mcse_sd,
            "ess_bulk": ess_bulk(x), "ess_mean": ess_m, "r_hat": rhat(x)}


def quantile_summary(x: np.ndarray, probs: Iterable[float]) -> dict[str, float]:
    """Draws x (chain, draw) -> per p: qNN, mcse_qNN, ess_qNN (ArviZ's quantile MCSE and ESS), NN = 100 p."""
    import arviz as az

    row = {}
    for q in probs:
        key = f"q{round(100 * q):02d}"
        row[key] = float(np.quantile(x, q))
        row[f"mcse_{key}"] = float(az.mcse(x, method="quantile", prob=q))
        row[f"ess_{key}"] = float(az.ess(x, method="quantile", prob=q))
    return row


def full_summary(x: np.ndarray, probs: Iterable[float]) -> dict[str, float]:
    """Draws x (chain, draw) -> `moment_summary`, ArviZ's tail ESS and `quantile_summary` at `probs`."""
    import arviz as az

    return {**moment_summary(x), "ess_tail": float(az.ess(x, method="tail")), **quantile_summary(x, probs)}


def summarise_draws(theta: np.ndarray, labels: Sequence[str], derived: dict[str, np.ndarray],
                    probs: Iterable[float]) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """theta (chain, draw, P) with P `labels`, and derived quantities (chain, draw) -> ({label: full_summary},
    {name: full_summary})."""
    probs = tuple(probs)
    params = {label: full_summary(theta[:, :, i], probs) for i, label in enumerate(labels)}
    return params, {name: full_summary(x, probs) for name, x in derived.items()}


def print_summary(rows: dict[str, dict[str, float]], record: dict[str, Any], out: Path) -> None:
    """The summaries of `full_summary` as a table on stdout, then divergences, wall time and where it went."""
    print(f"{'quantity':14s} {'mean':>9s} {'sd':>9s} {'q05':>9s} {'q95':>9s} {'mcse_mean':>10s} {'ess_bulk':>9s} "
          f"{'ess_tail':>9s} {'r_hat':>7s}")
    for label, row in rows.items():
        print(f"{label:14s} {row['mean']:9.4f} {row['sd']:9.4f} {row['q05']:9.4f} {row['q95']:9.4f} "
              f"{row['mcse_mean']:10.2g} {row['ess_bulk']:9.0f} {row['ess_tail']:9.0f} {row['r_hat']:7.4f}")
    print(f"divergences {record['divergences']}, wall {record['wall_seconds']} s, written to {out}")


def reference_parser(doc: str | None, *, draws: int, target_accept: float, out: Path) -> argparse.ArgumentParser:
    """The references' command line: --chains --warmup --draws --jobs --target-accept --seed --out."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=draws)
    parser.add_argument("--jobs", type=int, default=1, help="chains run in parallel processes")
    parser.add_argument("--target-accept", type=float, default=target_accept)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=out)
    return parser


def run_record(args: argparse.Namespace, results: list[dict], start: float,
               per_chain: Sequence[str] = ("divergences", "step_size")) -> dict[str, Any]:
    """The settings and per-chain sampler facts of a reference run (wall time measured from `start`)."""
    return {"chains": args.chains, "warmup": args.warmup, "draws": args.draws, "seed": args.seed,
            "target_accept": args.target_accept,
            "wall_seconds": round(time.perf_counter() - start, 1),
            "chain_seconds": [round(r["seconds"], 1) for r in results],
            **{key: [r[key] for r in results] for key in per_chain}}


def write_record(record: dict[str, Any], out: Path) -> None:
    """The record as indented JSON at `out` (folders created)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")


#: the per-chain sampler facts every Laplace-started reference records
LAPLACE_CHAIN_FACTS = ("gradient_evaluations", "divergences", "accepted_fraction", "step_size")


def write_reference(args: argparse.Namespace, results: list[dict], start: float, *, about: dict[str, str],
                    u_map: np.ndarray, labels: Sequence[str], derived: Callable[[np.ndarray], dict[str, np.ndarray]],
                    probs: Iterable[float], draws: Path, default_out: Path, root: Path) -> None:
    """Summarise the chains' draws (each result's `theta`, (draw, P)), write the record (`about`: model,
    data, sampler; the run's settings and per-chain facts; the mode; the summaries) to `args.out` and, for
    the bundled record (`args.out == default_out`), the draws as float32 to `draws`; print the table."""
    theta = np.stack([r["theta"] for r in results])  # (chain, draw, P)
    params, extra = summarise_draws(theta, labels, derived(theta), probs)
    bundled = args.out == default_out
    record = {
        **about,
        **run_record(args, results, start, per_chain=LAPLACE_CHAIN_FACTS),
        "u_map": u_map.tolist(),
        "draws_file": str(draws.relative_to(root)) if bundled else None,
        "parameters": params,
        "derived": extra,
    }
    write_record(record, args.out)
    if bundled:
        np.savez_compressed(draws, theta=theta.astype(np.float32), labels=np.array(labels))
    print_summary({**params, **extra}, record, args.out)

