"""Wall-clock time of each recipe's full fit: the "time" column of README's recipe table.

Every recipe in recipes/ except `sbc_*` (run by `nde-lab sbc`, timed per simulation) is fitted once as
written, `nde-lab fit --config recipes/NAME.yaml`, in a fresh process with one torch thread
(OMP_NUM_THREADS=1) into a temporary store, one recipe at a time; the time includes start-up and
writing the run. The 1-minute load average before each fit is recorded with it: measure on an idle
machine. Writes docs/recipe_times.json and docs/recipe_times.md; `tests/test_figures.py` checks that
README's times are within a factor of `TOLERANCE` of these.

    python -m benchmarks.recipe_times [--only spiral_node ou_fit]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JSON_OUT = ROOT / "docs" / "recipe_times.json"
MD_OUT = ROOT / "docs" / "recipe_times.md"
#: README's "~X" may differ from the measured time by at most this factor either way
TOLERANCE = 1.5

__all__ = ["JSON_OUT", "TOLERANCE", "load", "recipes", "time_recipe"]


def recipes() -> list[str]:
    """The recipes timed here: every recipes/*.yaml but the `sbc_*` ones."""
    return sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml") if not p.stem.startswith("sbc_"))


def time_recipe(name: str, store: Path) -> dict:
    """Fit recipes/NAME.yaml once into `store`: {seconds, load, status} (status: the exit code)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    load_avg = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nde_lab.cli", "fit", "--config", str(ROOT / "recipes" / f"{name}.yaml"),
                           "--store", str(store), "--quiet"], env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
    return {"seconds": round(seconds, 1), "load": round(load_avg, 2), "status": proc.returncode}


def load(path: Path = JSON_OUT) -> dict[str, dict]:
    """{recipe: {seconds, load, status}} as last written."""
    return json.loads(path.read_text())["recipes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=None, help="recipes to time (default: all)")
    args = parser.parse_args()
    unknown = sorted(set(args.only or []) - set(recipes()))
    if unknown:
        parser.error(f"--only {' '.join(unknown)}: no such recipe among {', '.join(recipes())}")
    times = load() if args.only and JSON_OUT.exists() else {}
    with tempfile.TemporaryDirectory(prefix="nde-lab-times-") as tmp:
        for name in args.only or recipes():
            times[name] = time_recipe(name, Path(tmp) / "store")
            print(f"{name:32s} {times[name]['seconds']:8.1f} s  load {times[name]['load']:.2f}  "
                  f"exit {times[name]['status']}", flush=True)
    written = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    JSON_OUT.write_text(json.dumps({"written": written, "machine": machine, "recipes": dict(sorted(times.items()))},
                                   indent=2) + "\n")
    lines = ["# Recipe times", "",
             f"Written by `python -m benchmarks.recipe_times` on {written} ({machine}): each recipe's full fit as "
             "written, one torch thread, one recipe at a time; README's time column quotes these (within a factor "
             f"of {TOLERANCE}).", "",
             "| recipe | seconds | 1-min load before | exit |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {v['seconds']:.1f} | {v['load']:.2f} | {v['status']} |" for k, v in sorted(times.items())]
    MD_OUT.write_text("\n".join(lines) + "\n")
    print(f"wrote {JSON_OUT} and {MD_OUT}")


if __name__ == "__main__":
    main()
