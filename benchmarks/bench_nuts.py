"""Exact NUTS on the hare-lynx Lotka-Volterra posterior: the lab (recipes/lotka_volterra_nuts.yaml) vs NumPyro + diffrax.

Both run 4 chains x (1000 warm-up + 1000 draws) of NUTS with a dense mass matrix on the same model,
one after the other on the same machine. The lab: `nde-lab fit` of the recipe in a subprocess (wall
includes imports, the Laplace start, worker start-up and writing the run); NumPyro: `benchmarks/
nuts_numpyro.py` (wall includes JIT compilation), run with the python of `NUTS_NUMPYRO_PYTHON`,
`.tox/nuts-numpyro`, or /tmp/npenv, whichever exists first (`tox -e nuts-numpyro` builds one); the
row is left out when none does. ESS: ArviZ bulk ESS, min over the 8 scalar parameters; ESS/s = min
ESS / wall. The 1-minute load average before each run is in the notes (2-core machine).

Where the lab's time goes (one gradient of the potential at the posterior mode, 2.8 ms, cProfile):
LSODA with its pure-Python sensitivity right-hand side ~1.2 ms, the torch forward pass (priors,
transforms, likelihood, the solver's set-up) ~0.9 ms, its backward ~0.6 ms; Pyro's NUTS adds ~0.4 ms
per leapfrog step. NumPyro's JIT-compiled step costs ~0.7 ms, so NumPyro needs about a quarter of
the lab's CPU time for the same ESS. An earlier run on a machine shared with test runs (load ~5) took 1236 s and 1660 s and
gave the lab 1.39x NumPyro's ESS/s: load, not the samplers; quote the quiet figures in the table.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_nuts      (or: python -m benchmarks.run --only bench_nuts)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["lab_row", "main", "numpyro_python", "numpyro_row", "run", "write_section"]

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "lotka_volterra_nuts.yaml"
SCALARS = [("alpha", None), ("beta", None), ("gamma", None), ("delta", None), ("z_init", 0), ("z_init", 1),
           ("sigma", 0), ("sigma", 1)]


def _load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def _children_cpu() -> float:
    """User + system CPU seconds of this process's finished children (the subprocess and its workers)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _ess_rhat(posterior) -> tuple[float, float]:
    import arviz as az

    ess, rhat = [], []
    for name, i in SCALARS:
        x = posterior[name].values if i is None else posterior[name].values[..., i]
        ess.append(float(az.ess(x, method="bulk")))
        rhat.append(float(az.rhat(x)))
    return min(ess), max(rhat)


def lab_row(extra: list[str] | None = None) -> dict:
    """`nde-lab fit` of the recipe in a subprocess, then the diagnostics of the stored run."""
    import nde_lab

    load = _load()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as store:
        start, cpu = time.perf_counter(), _children_cpu()
        proc = subprocess.run([sys.executable, "-m", "nde_lab", "fit", "--config", str(RECIPE), "--store", store,
                               *(extra or [])], cwd=ROOT, env=env, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - start, _children_cpu() - cpu
        if proc.returncode != 0:
            raise RuntimeError(f"the lab's NUTS recipe failed:\n{proc.stderr[-3000:]}")
        run_dir = next(p for p in Path(store).rglob("run.zarr")).parent
        run = nde_lab.open_run(run_dir)
        post = run.posterior
        ess, rhat = _ess_rhat(post)
        stats = run.tree["sample_stats"].to_dataset().load()  # read before the store is deleted
        attrs = dict(post.attrs)
    grads = int(stats["n_steps"].sum())  # leapfrog steps after warm-up, as NumPyro's num_steps
    return {"sampler": "nde-lab NUTSTask (Pyro NUTS, scipy LSODA sensitivities, 2 processes)", "wall_s": wall,
            "cpu_s": cpu,
            "min_ess_bulk": ess, "ess_per_s": ess / wall, "max_r_hat": rhat,
            "divergences": int(stats["diverging"].sum()), "gradients_after_warmup": grads,
            "notes": f"{load}; sampling {attrs.get('seconds')} s (chains {attrs.get('chain_seconds')} s), "
                     f"Laplace start {attrs.get('laplace_seconds')} s"}


def numpyro_python() -> str | None:
    """The python of the NumPyro environment, or None."""
    candidates = [os.environ.get("NUTS_NUMPYRO_PYTHON", ""), str(ROOT / ".tox" / "nuts-numpyro" / "bin" / "python"),
                  "/tmp/npenv/bin/python"]
    return next((c for c in candidates if c and Path(c).exists()), None)


def numpyro_row(python: str, chain_method: str = "sequential") -> dict:
    load, cpu = _load(), _children_cpu()
    proc = subprocess.run([python, str(ROOT / "benchmarks" / "nuts_numpyro.py"), "--chains", "4", "--warmup", "1000",
                           "--draws", "1000", "--chain-method", chain_method],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks/nuts_numpyro.py failed:\n{proc.stderr[-3000:]}")
    cpu = _children_cpu() - cpu
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"sampler": rec["sampler"] + f", chain_method={chain_method}", "wall_s": rec["wall_seconds"], "cpu_s": cpu,
            "min_ess_bulk": rec["min_ess_bulk"], "ess_per_s": rec["ess_per_second"], "max_r_hat": rec["max_r_hat"],
            "divergences": rec["divergences"], "gradients_after_warmup": rec["leapfrog_steps_after_warmup"],
            "notes": load}


def run() -> list[dict]:
    rows = [lab_row()]
    python = numpyro_python()
    if python is not None:
        rows.append(numpyro_row(python, os.environ.get("NUTS_NUMPYRO_CHAIN_METHOD", "sequential")))
        lab, ref = rows[0]["ess_per_s"], rows[1]["ess_per_s"]
        rows[0]["notes"] += f"; ESS/s {lab / ref:.2f}x NumPyro's" if np.isfinite(lab / ref) else ""
    return rows


def write_section(rows: list[dict], elapsed: float, out: Path = ROOT / "docs" / "benchmarks.md") -> str:
    """Put this module's section into docs/benchmarks.md (replacing an older one), as `benchmarks.run` formats it."""
    from benchmarks.run import _format

    columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = [f"## bench_nuts ({elapsed:.0f} s)", "", (__doc__ or "").strip(), "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_format(row.get(c, "")) for c in columns) + " |" for row in rows]
    section = "\n".join(lines)
    text = out.read_text()
    parts = text.split("\n## ")
    kept = [p for p in parts[1:] if not p.startswith("bench_nuts ")]
    out.write_text("\n## ".join([parts[0].rstrip("\n") + "\n", *[p.rstrip("\n") + "\n" for p in kept]]).rstrip("\n")
                   + "\n\n" + section + "\n")
    return section


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="*", type=Path, help="JSON rows measured earlier (one object per line) "
                        "instead of running both samplers now")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.rows:
        rows = [json.loads(line) for f in args.rows for line in f.read_text().splitlines() if line.strip()]
    else:
        rows = run()
    print(write_section(rows, sum(r["wall_s"] for r in rows) if args.rows else time.perf_counter() - start))


if __name__ == "__main__":
    main()
