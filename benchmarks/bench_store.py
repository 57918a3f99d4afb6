"""Run store throughput: committing and reading a float32 path ensemble (sample, time, state) through
`RunWriter` (Zarr v3, Zstandard level 3 with checksums, manifest with SHA-256 of every file) and
`open_run` (checked against the manifest), vs `np.save` + fsync and `np.load` of the same array.
Target: >= 50% of the numpy throughput at 1 GB (`NDE_LAB_BENCH_STORE_MB` sets the size)."""

from __future__ import annotations

import os
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


def run(megabytes: float | None = None) -> list[dict]:
    megabytes = float(megabytes or os.environ.get("NDE_LAB_BENCH_STORE_MB", 1024))
    data = _ensemble(megabytes)
    size_mb = data["y"].nbytes / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        with open(root / "y.npy", "wb") as handle:
            np.save(handle, data["y"].values)
            handle.flush()
            os.fsync(handle.fileno())
        np_write = time.perf_counter() - start
        start = time.perf_counter()
        np.load(root / "y.npy").sum()
        np_read = time.perf_counter() - start

        writer = RunWriter(root / "store", "bench", "r")
        writer.begin(recipe_yaml="", seed=0)
        start = time.perf_counter()
        final = writer.complete({"trajectories": data})
        run_write = time.perf_counter() - start
        start = time.perf_counter()
        open_run(final).trajectories["y"].values.sum()
        run_read = time.perf_counter() - start
        stored = sum(p.stat().st_size for p in (final / "run.zarr").rglob("*") if p.is_file()) / 2**20
    return [
        {"operation": "write", "MB": round(size_mb), "numpy s": np_write, "run store s": run_write,
         "store/numpy throughput": np_write / run_write, "stored MB": round(stored)},
        {"operation": "read", "MB": round(size_mb), "numpy s": np_read, "run store s": run_read,
         "store/numpy throughput": np_read / run_read, "stored MB": round(stored)},
    ]
