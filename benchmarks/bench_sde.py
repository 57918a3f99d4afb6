"""SDE sampling as a user pays for it: `solve_sde` and `run.sample` against hand-written loops.

Lab and reference runs alternate (lab, reference, lab, ...) so drifting machine load hits both; each
ratio is the median over rounds of lab/reference, with its spread (min-max over rounds). `run.sample`
is timed end to end (the call a user makes: reading the run, sampling, building the Dataset); the
reference is a hand-written torch loop of the same exact transitions. Peak memory of a streamed
1e6-path query is measured in a fresh subprocess (its own max RSS).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchsde
from torch import Tensor, nn

from nde_lab.solvers.sde import SDESolverOptions, solve_sde

__all__ = ["run"]

BATCH, DIM, WIDTH, DT, T_END, N_OUT = 1024, 2, 32, 0.01, 1.0, 11


class _MLPSDE(nn.Module):
    """Diagonal-noise Ito SDE with small MLP drift and diffusion (the issue's benchmark case)."""

    noise_type, sde_type = "diagonal", "ito"

    def __init__(self) -> None:
        super().__init__()
        self.drift = nn.Sequential(nn.Linear(DIM, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH), nn.Tanh(), nn.Linear(WIDTH, DIM))
        self.diffusion = nn.Sequential(nn.Linear(DIM, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH), nn.Tanh(),
                                       nn.Linear(WIDTH, DIM), nn.Sigmoid())

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        return self.drift(y)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return self.diffusion(y)


def _hand_loop(sde: _MLPSDE, y0: Tensor, seed: int) -> Tensor:
    """The reference: Euler-Maruyama with one seeded `randn` per step, states kept at the output times."""
    gen = torch.Generator().manual_seed(seed)
    n_steps = round(T_END / DT)
    every = n_steps // (N_OUT - 1)
    y, out = y0, [y0]
    sqrt_dt = DT**0.5
    for k in range(n_steps):
        t = torch.tensor(k * DT)
        y = y + sde.f(t, y) * DT + sde.g(t, y) * torch.randn(y.shape, generator=gen) * sqrt_dt
        if (k + 1) % every == 0:
            out.append(y)
    return torch.stack(out)


def _alternate(lab: Callable[[], object], reference: Callable[[], object], rounds: int) -> dict[str, float]:
    """Alternating timings: median lab and reference ms, and the lab/reference ratio (median, min, max) over rounds."""
    lab(), reference()  # warm-up
    lab_ms, ref_ms = [], []
    for _ in range(rounds):
        for fn, out in ((lab, lab_ms), (reference, ref_ms)):
            start = time.perf_counter()
            fn()
            out.append(1e3 * (time.perf_counter() - start))
    ratios = [a / b for a, b in zip(lab_ms, ref_ms, strict=True)]
    return {"lab_ms": statistics.median(lab_ms), "reference_ms": statistics.median(ref_ms),
            "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios)}


MODELS = {"OrnsteinUhlenbeck": ("{theta: 1.0, mu: 2.0, sigma: 0.5}", 0.0), "GeometricBrownianMotion": ("{mu: 0.05, sigma: 0.2}", 1.0)}


def _recipe(cls: str) -> str:
    init, x0 = MODELS[cls]
    sde = f"{{class_path: nde_lab.dynamics.sde_parametric.{cls}, init_args: {init}}}"
    return textwrap.dedent(f"""\
        seed_everything: 0
        trainer: {{max_epochs: 2, accelerator: cpu, enable_progress_bar: false}}
        model:
          class_path: nde_lab.train.sde_fit.SDEFitTask
          init_args: {{sde: {sde}, transition: exact, solver: {{method: euler, dt: 0.01}}, n_samples: 50}}
        data:
          class_path: nde_lab.data.sde_data.SimulatedPaths
          init_args: {{sde: {sde}, n_paths: 50, n_times: 21, t_end: 2.0, x0: {x0}, sim_dt: 0.01, val_fraction: 0.0,
                      batch_size: 1000, seed: 0}}
        """)


def _fit(store: Path, cls: str) -> Path:
    recipe = store / f"{cls}.yaml"
    recipe.write_text(_recipe(cls))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "nde_lab", "fit", "--config", str(recipe), "--store", str(store)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    (run_dir,) = [p for p in (store / cls).iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run_dir


def _hand_exact(sde: nn.Module, n: int, times: Tensor, seed: int) -> Tensor:
    """The reference: a hand-written loop of the exact transitions, one seeded randn per output time."""
    p = {k: v.detach() for k, v in sde.constrained().items()}
    gen = torch.Generator().manual_seed(seed)
    y = torch.full((n, 1), 0.0 if "theta" in p else 1.0, dtype=torch.float64)
    out = torch.empty(times.numel(), n, 1, dtype=torch.float64)  # time-major, as a hand-written loop fills it
    out[0] = y
    for k, dt in enumerate(torch.diff(times).tolist()):
        z = torch.randn((n, 1), generator=gen, dtype=torch.float64)
        if "theta" in p:
            decay = torch.exp(-p["theta"] * dt)
            y = p["mu"] + (y - p["mu"]) * decay + (p["sigma"] ** 2 * -torch.expm1(-2 * p["theta"] * dt) / (2 * p["theta"])).sqrt() * z
        else:
            y = y * torch.exp((p["mu"] - p["sigma"] ** 2 / 2) * dt + p["sigma"] * dt**0.5 * z)
        out[k + 1] = y
    return out


_RSS_PROBE = textwrap.dedent("""
    import json, resource, sys, numpy as np, nde_lab
    run = nde_lab.open_run(sys.argv[1])
    answer = run.interval(lambda ds: ds.y.isel(time=-1, state=0), n=1_000_000, batch=20_000,
                          times=np.linspace(0.0, 1.0, 101), x0=0.0, method=sys.argv[2])
    print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "n_draws": answer.attrs["n_draws"]}))
""")


def _peak_rss_mb(run_dir: Path, method: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(run_dir), method], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["rss_mb"])


def run(rounds: int = 5) -> list[dict]:
    """Rows {case, lab_ms, reference_ms, ratio, ratio_min, ratio_max, target, notes}."""
    import nde_lab

    torch.manual_seed(0)
    torch.set_num_threads(1)
    sde = _MLPSDE()
    y0, t = torch.zeros(BATCH, DIM), torch.linspace(0.0, T_END, N_OUT)
    fast = SDESolverOptions(method="euler", dt=DT)
    rows = []
    with torch.no_grad():
        timing = _alternate(lambda: solve_sde(sde, y0, t, options=fast, seed=0), lambda: _hand_loop(sde, y0, 0), rounds)
        case = f"sde_sample_euler_{BATCH}x{DIM}_mlp{WIDTH}_{round(T_END / DT)}steps"
        rows.append({"case": case, **timing, "target": "<= 2",
                     "notes": "solve_sde fixed step (GridBrownian, seeded, streamed) vs hand-written Euler-Maruyama loop"})
        timing = _alternate(lambda: torchsde.sdeint(sde, y0, t, method="euler", dt=DT), lambda: _hand_loop(sde, y0, 0), 2)
        rows.append({"case": case + "_torchsde_default", **timing, "target": "context",
                     "notes": "torchsde.sdeint with its default BrownianInterval, the path the fast sampler replaces"})
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        times = np.linspace(0.0, 1.0, 101)
        for cls in MODELS:
            run_ = nde_lab.open_run(_fit(store, cls))
            model = run_.model.sde
            x0 = 0.0 if cls == "OrnsteinUhlenbeck" else 1.0
            for n in (1_000, 10_000, 100_000):
                timing = _alternate(lambda n=n, r=run_, x0=x0: r.sample(n, times=times, x0=x0, seed=1),
                                    lambda n=n, m=model: _hand_exact(m, n, torch.as_tensor(times), 1), rounds)
                rows.append({"case": f"{cls} run.sample {n} paths x 100 steps", **timing, "target": "<= 1.2",
                             "notes": "exact transitions (default) end to end vs a hand-written torch loop of them"})
        ou_dir = next(p for p in (store / "OrnsteinUhlenbeck").iterdir() if p.is_dir() and not p.name.startswith("."))
        for method in ("auto", "solver"):
            rows.append({"case": f"OU run.interval 1e6 paths x 100 steps (method={method}), peak RSS MB",
                         "lab_ms": _peak_rss_mb(ou_dir, method), "target": "<= 1024",
                         "notes": "streamed in batches of 20000 paths; fresh subprocess, its own max RSS (includes ~400 MB of imports)"})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
