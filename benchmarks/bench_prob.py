"""Benchmarks of issue 4: batched rk4 solve+grad, and the hare-lynx fast posterior vs plain NUTS.

`run()` returns rows {case, seconds, peak_mb, notes}. Peak memory is the process's max RSS (ru_maxrss)
after each case, so it is a running maximum. Run with OMP_NUM_THREADS matching the cores you report.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _solve_grad(n: int | None) -> float:
    from nde_lab.dynamics.classic import LotkaVolterra
    from nde_lab.solvers.ode import ODESolverOptions, solve_ode

    shape = () if n is None else (n,)
    rates = torch.tensor([0.55, 0.028, 0.8, 0.024], dtype=torch.float64).expand(*shape, 4).clone().requires_grad_()
    y0 = torch.log(torch.tensor([34.0, 6.0], dtype=torch.float64)).expand(*shape, 2)
    t = torch.arange(21.0, dtype=torch.float64)
    opts = ODESolverOptions(method="rk4", step_size=0.1)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        vf = LotkaVolterra(*rates.unbind(-1), coordinates="log")
        solve_ode(vf, y0, t, opts).y.sum().backward()
        best = min(best, time.perf_counter() - start)
    return best


def run() -> list[dict]:
    rows = []
    single = _solve_grad(None)
    rows.append({"case": "lv_rk4_solve_grad_single", "seconds": single, "peak_mb": _peak_mb(),
                 "notes": "rk4 step 0.1 over 20 years, one parameter set, forward + gradient"})
    batched = _solve_grad(1024)
    rows.append({"case": "lv_rk4_solve_grad_batched_1024", "seconds": batched, "peak_mb": _peak_mb(),
                 "notes": f"same, 1024 parameter sets in one solve: {batched / single:.2f}x a single solve, "
                          f"{single * 1024 / batched:.0f}x cheaper per parameter set"})
    # the recipe through the real CLI, in a child process so its peak memory is its own
    store = Path("/tmp/nde_lab_bench_prob")
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "nde_lab.cli", "fit", "--config",
           str(ROOT / "recipes" / "lotka_volterra_bayes.yaml"), "--store", str(store)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    peak = next((float(line.split()[-1]) / 1024 for line in proc.stderr.splitlines() if "Maximum resident" in line), float("nan"))
    k_line = next((line for line in proc.stderr.splitlines() if "Pareto k" in line), "no Pareto k line")
    rows.append({"case": "hare_lynx_fast_posterior", "seconds": seconds, "peak_mb": peak,
                 "notes": f"recipes/lotka_volterra_bayes.yaml end to end (exit {proc.returncode}); {k_line.strip()}"})
    # plain NUTS: cost per draw estimated from the measured gradient cost (a full run takes hours)
    rows.append({"case": "hare_lynx_nuts_estimate", "seconds": single * 15 * 4 * 2000, "peak_mb": float("nan"),
                 "notes": "estimate: ~15 leapfrog steps per draw x 4 chains x 2000 iterations x one solve+grad each"})
    # the NUTS reference's potential: scipy LSODA forward sensitivities (benchmarks/nuts_reference.py)
    from benchmarks.nuts_reference import OUT, HareLynxPosterior

    model = HareLynxPosterior.hare_lynx()
    u = np.log([0.55, 0.028, 0.8, 0.024, 34.0, 6.0, 0.25, 0.25])
    start = time.perf_counter()
    for _ in range(50):
        model.log_density(u)
    per_eval = (time.perf_counter() - start) / 50
    rows.append({"case": "lv_scipy_sensitivity_logp_grad", "seconds": per_eval, "peak_mb": _peak_mb(),
                 "notes": f"log p and its exact gradient, LSODA rtol=atol=1e-10: {single / per_eval:.0f}x cheaper "
                          "than the torch rk4 solve+grad"})
    if OUT.exists():
        ref = json.loads(OUT.read_text())
        rows.append({"case": "hare_lynx_nuts_reference (stored, not re-run)", "seconds": ref["wall_seconds"],
                     "peak_mb": float("nan"),
                     "notes": f"{ref['chains']} chains x ({ref['warmup']} warm-up + {ref['draws']} draws), "
                              f"{sum(ref['gradient_evaluations'])} gradients; `python -m benchmarks.nuts_reference`"})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
