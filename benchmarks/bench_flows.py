"""Density models: FFJORD training-step time with the exact trace vs Hutchinson's estimator by dimension, and
discrete-flow density/sampling times per layer type (MAF vs IAF asymmetry)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from nde_lab.dynamics import MLPVectorField
from nde_lab.flows import (
    CNF,
    AffineAutoregressive,
    AffineCoupling,
    DiscreteFlow,
    Permute,
    SplineAutoregressive,
    SplineCoupling,
)
from nde_lab.solvers import ODESolverOptions

BATCH, REPEATS, WARMUP = 256, 7, 2


def _median_seconds(step: Callable[[], None], repeats: int = REPEATS, warmup: int = WARMUP) -> float:
    times = []
    for i in range(repeats + warmup):
        start = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cnf_rows() -> list[dict]:
    rows = []
    for dim in (2, 16, 64):
        timings = {}
        for trace in ("exact", "hutchinson"):
            torch.manual_seed(0)
            field = MLPVectorField(dim, width=64, depth=2, time_input=True, final_scale=1.0)
            cnf = CNF(field, trace=trace, solver=ODESolverOptions(method="rk4", step_size=0.25))
            x = torch.randn(BATCH, dim)

            def step(cnf=cnf, x=x) -> None:
                cnf.zero_grad()
                loss, _ = cnf.loss(x)
                loss.backward()

            timings[trace] = _median_seconds(step)
            nfe = cnf.last_stats.nfe
        rows.append({"benchmark": f"CNF train step, D={dim}", "exact_s": timings["exact"],
                     "hutchinson_s": timings["hutchinson"], "exact/hutchinson": timings["exact"] / timings["hutchinson"],
                     "nfe": nfe, "batch": BATCH})
    return rows


def _flow_rows() -> list[dict]:
    layers = {
        "affine coupling": lambda: AffineCoupling(hidden=[64, 64]),
        "spline coupling": lambda: SplineCoupling(hidden=[64, 64]),
        "affine MAF": lambda: AffineAutoregressive(hidden=[64, 64], direction="maf"),
        "affine IAF": lambda: AffineAutoregressive(hidden=[64, 64], direction="iaf"),
        "spline MAF": lambda: SplineAutoregressive(hidden=[64, 64], direction="maf"),
        "spline IAF": lambda: SplineAutoregressive(hidden=[64, 64], direction="iaf"),
    }
    dim, rows = 8, []
    for name, make in layers.items():
        torch.manual_seed(0)
        flow = DiscreteFlow(dim, [make(), Permute(), make(), Permute(), make(), Permute(), make()])
        x = torch.randn(1024, dim)

        def density_step(flow=flow, x=x) -> None:
            flow.zero_grad()
            (-flow.log_prob(x).mean()).backward()

        def sample_step(flow=flow) -> None:
            with torch.no_grad():
                flow.sample(1024)

        rows.append({"benchmark": f"{name} x4, D={dim}", "log_prob+backward_s": _median_seconds(density_step),
                     "sample_s": _median_seconds(sample_step), "batch": 1024})
    return rows


def run() -> list[dict]:
    """Median seconds after warm-up; CNF with rk4 (4 steps, so equal NFE for both traces)."""
    torch.set_num_threads(1)
    return _cnf_rows() + _flow_rows()


if __name__ == "__main__":
    for row in run():
        print(row)
