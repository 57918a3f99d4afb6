"""Command startup: `nde-lab --help`, `nde-lab runs` and `nde-lab show` against a fit's startup (`nde-lab fit
--config recipes/spiral_node.yaml --print_config`: every import and the recipe's validation, no training).
Target: the light commands under 1/3 of a fit's startup. Median of 5 fresh processes each."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPEATS = 5


def _seconds(argv: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nde_lab", *argv], cwd=REPO, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "store"
        fit = ["fit", "--config", str(REPO / "recipes" / "ou_fit.yaml"), "--trainer.max_epochs", "1", "--store", str(store)]
        subprocess.run([sys.executable, "-m", "nde_lab", *fit, "--quiet"], cwd=REPO, capture_output=True, check=True)
        fit_s = _seconds(["fit", "--config", str(REPO / "recipes" / "spiral_node.yaml"), "--print_config"])
        rows = [{"command": "nde-lab fit --config recipes/spiral_node.yaml --print_config", "seconds": fit_s,
                 "ratio_to_fit": 1.0, "target": "", "notes": "reference: imports Lightning, torch, the tasks; validates the recipe"}]
        for name, argv, note in (
            ("nde-lab --help", ["--help"], "no Lightning, no torch"),
            ("nde-lab runs --store S", ["runs", "--store", str(store)], "one run; xarray + zarr + pandas only"),
            ("nde-lab show ou_fit/latest", ["show", "ou_fit/latest", "--store", str(store)], "xarray + zarr only"),
        ):
            seconds = _seconds(argv)
            rows.append({"command": name, "seconds": seconds, "ratio_to_fit": seconds / fit_s, "target": "< 0.33",
                         "notes": note})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
