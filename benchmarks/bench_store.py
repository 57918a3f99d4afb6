"""Run store throughput: committing and reading a float32 path ensemble (sample, time, state) through
`RunWriter.complete` (Zarr v3, Blosc-LZ4 with byte shuffle + CRC-32C per chunk, manifest) and
`open_run` + reading the variable (checked against the manifest), vs `np.save` + fsync and `np.load`
of the same array. numpy and the store alternate (numpy, store, numpy, store, ...) so machine load hits
both; the ratio is the median over rounds of the paired ratios, with its min-max spread; CPU s is the
process's CPU time (all threads). Target: >= 50% of numpy's throughput at 1 GB
(`NDE_LAB_BENCH_STORE_MB`, default 1024; `NDE_LAB_BENCH_STORE_ROUNDS`, default 3)."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from nde_lab.run import open_run
from nde_lab.store import RunWriter

__all__ = ["run"]


def _ensemble(megabytes: float) -> xr.Dataset:
    n_time, n_state = 1000, 4
    n_sample = max(1, int(megabytes * 2**20 / (4 * n_time * n_state)))
    rng = np.random.default_rng(0)
    # random walks: smooth in time like real paths (white noise would not compress at all)
    y = np.cumsum(rng.standard_normal((n_sample, n_time, n_state), dtype=np.float32) * 0.01, axis=1)
    return xr.Dataset({"y": (("sample", "time", "state"), y)}, coords={"time": np.linspace(0, 1, n_time)})


def _timed(fn) -> tuple[float, float]:
    """(wall s, CPU s of the process) of `fn()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _numpy_round(root: Path, y: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    def write() -> None:
        with open(root / "y.npy", "wb") as handle:
            np.save(handle, y)
            handle.flush()
            os.fsync(handle.fileno())

    written = _timed(write)
    read = _timed(lambda: np.load(root / "y.npy").sum())
    (root / "y.npy").unlink()
    return written, read


def _store_round(root: Path, data: xr.Dataset) -> tuple[tuple[float, float], tuple[float, float], float]:
    writer = RunWriter(root / "store", "bench", "r")
    writer.begin(recipe_yaml="", seed=0)
    final: list[Path] = []
    written = _timed(lambda: final.append(writer.complete({"trajectories": data})))
    read = _timed(lambda: open_run(final[0]).trajectories["y"].values.sum())
    stored = sum(p.stat().st_size for p in (final[0] / "run.zarr").rglob("*") if p.is_file()) / 2**20
    shutil.rmtree(root / "store")
    return written, read, stored


def run(megabytes: float | None = None, rounds: int | None = None) -> list[dict]:
    megabytes = float(megabytes or os.environ.get("NDE_LAB_BENCH_STORE_MB", 1024))
    rounds = int(rounds or os.environ.get("NDE_LAB_BENCH_STORE_ROUNDS", 3))
    data = _ensemble(megabytes)
    y = data["y"].values
    load = os.getloadavg()[0]
    numpy, store, stored = [], [], 0.0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _store_round(root, _ensemble(1))  # warm-up: first-use imports and codec set-up are not throughput
        for _ in range(rounds):
            numpy.append(_numpy_round(root, y))
            *timings, stored = _store_round(root, data)
            store.append(timings)
    load = max(load, os.getloadavg()[0])
    rows = []
    for index, operation in enumerate(["write", "read"]):
        ratios = [n[index][0] / s[index][0] for n, s in zip(numpy, store, strict=True)]
        rows.append({
            "operation": operation, "MB": round(data["y"].nbytes / 2**20),
            "numpy s": statistics.median(n[index][0] for n in numpy),
            "run store s": statistics.median(s[index][0] for s in store),
            "store/numpy throughput": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
            "numpy CPU s": statistics.median(n[index][1] for n in numpy),
            "run store CPU s": statistics.median(s[index][1] for s in store),
            "stored MB": round(stored), "load": round(load, 1), "target": ">= 0.5",
        })
    return rows
