"""Benchmarks of the solver seam for mechanistic models (issue 12): scipy forward sensitivities vs torch
rk4 for one Lotka-Volterra value + gradient, and a batch with one stiff draw (per-draw vs plain dopri5).

`run()` returns rows {case, seconds, notes}; times are the best of several repeats.
"""

from __future__ import annotations

import time

import torch

__all__ = ["run"]


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _lv_value_grad(method: str, **opts) -> tuple[float, int]:
    from nde_lab.dynamics.classic import LotkaVolterra
    from nde_lab.solvers import ODESolverOptions, solve_ode

    t = torch.arange(21.0, dtype=torch.float64)
    rates = torch.tensor([0.55, 0.028, 0.84, 0.026], dtype=torch.float64, requires_grad=True)
    y0 = torch.log(torch.tensor([33.0, 6.2], dtype=torch.float64)).requires_grad_(True)
    options = ODESolverOptions(method=method, **opts)
    nfe = []

    def once():
        for _ in range(20):
            sol = solve_ode(LotkaVolterra(rates, coordinates="log"), y0, t, options)
            torch.autograd.grad(sol.y.sum(), (rates, y0))
        nfe.append(sol.stats.nfe)

    return _best(once, 3) / 20, nfe[-1]


def _oscillators(n: int, stiff: bool):
    from nde_lab.dynamics.classic import DampedOscillator

    g = torch.Generator().manual_seed(1)
    omega = 0.5 + 1.5 * torch.rand(n, generator=g, dtype=torch.float64)
    zeta = 0.05 + 0.45 * torch.rand(n, generator=g, dtype=torch.float64)
    if stiff:
        omega[7], zeta[7] = 1000.0, 50.0
    return DampedOscillator(omega, zeta)


def _batch(n: int, stiff: bool, per_draw: bool, max_num_steps: int = 10_000) -> tuple[float, str]:
    from nde_lab.errors import SolverError
    from nde_lab.solvers import ODESolverOptions, solve_ode

    field = _oscillators(n, stiff)
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64).expand(n, 2)
    t = torch.linspace(0.0, 10.0, 11, dtype=torch.float64)
    opts = ODESolverOptions(method="dopri5", rtol=1e-6, atol=1e-8, per_draw=per_draw, max_num_steps=max_num_steps)
    status = []

    def once():
        start = time.perf_counter()
        try:
            sol = solve_ode(field, y0, t, opts)
            status.append(f"ok, {sol.stats.steps} steps, {sol.stats.members_implicit} member(s) by LSODA")
        except SolverError:
            status.append(f"SolverError after {time.perf_counter() - start:.1f} s (step budget {max_num_steps})")

    return _best(once, 1 if (stiff and not per_draw) else 3), status[-1]


def run() -> list[dict]:
    rows = []
    rk4, rk4_nfe = _lv_value_grad("rk4", step_size=0.1)
    rows.append({"case": "lv_value_grad_rk4", "seconds": rk4,
                 "notes": f"torch rk4 step 0.1, hare-lynx 20 years, log coordinates, value + gradient ({rk4_nfe} evaluations)"})
    for rtol in (1e-6, 1e-8):
        sec, nfe = _lv_value_grad("lsoda", rtol=rtol, atol=rtol)
        rows.append({"case": f"lv_value_grad_lsoda_rtol{rtol:g}", "seconds": sec,
                     "notes": f"scipy LSODA forward sensitivities, pure-Python LV system ({nfe} evaluations): "
                              f"{rk4 / sec:.1f}x faster than rk4"})
    n = 256
    base, s0 = _batch(n, False, True)
    rows.append({"case": f"oscillators_{n}_per_draw", "seconds": base, "notes": s0})
    with_stiff, s1 = _batch(n, True, True)
    rows.append({"case": f"oscillators_{n}_plus_stiff_per_draw", "seconds": with_stiff,
                 "notes": f"{s1}; {with_stiff / base:.2f}x the batch without the stiff draw"})
    plain, s2 = _batch(n, False, False)
    rows.append({"case": f"oscillators_{n}_dopri5", "seconds": plain, "notes": f"torchdiffeq, one step size: {s2}"})
    plain_stiff, s3 = _batch(n, True, False, max_num_steps=2000)
    rows.append({"case": f"oscillators_{n}_plus_stiff_dopri5", "seconds": plain_stiff, "notes": f"torchdiffeq: {s3}"})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
