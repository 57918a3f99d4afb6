"""Run every benchmark module and write docs/benchmarks.md (`tox -e bench`, or `python -m benchmarks.run`)."""

from __future__ import annotations

import argparse
import importlib
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

MODULES = ["bench_node", "bench_sde", "bench_prob", "bench_flows", "bench_store", "bench_startup", "bench_solvers"]
OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", default=None, help="benchmark modules to run (default: all)")
    args = parser.parse_args()
    sections = []
    for name in args.only or MODULES:
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"benchmarks.{name}":
                raise
            continue
        start = time.perf_counter()
        rows = module.run()
        elapsed = time.perf_counter() - start
        columns = list(dict.fromkeys(k for row in rows for k in row))
        lines = [f"## {name} ({elapsed:.0f} s)", "", f"{(module.__doc__ or '').strip()}", "",
                 "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(_format(row.get(c, "")) for c in columns) + " |" for row in rows]
        sections.append("\n".join(lines))
        print("\n".join(lines), flush=True)
    setting = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch thread(s), "
               f"torch {torch.__version__}, Python {platform.python_version()}")
    written = f"Written by `tox -e bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {setting}.\n"
    note = "Times are wall-clock; compare ratios, which transfer between machines better than absolute times.\n"
    header = "# Benchmarks\n\n" + written + note
    if args.only and OUT.exists():  # keep the other modules' sections, and the line saying when they ran
        old = OUT.read_text()
        first = next((line + "\n" for line in old.splitlines() if line.startswith("Written by")), written)
        kept = {part.split(" ", 1)[0]: "## " + part.rstrip("\n") for part in old.split("\n## ")[1:]}
        kept.update({sec[3:].split(" ", 1)[0]: sec for sec in sections})
        sections = [kept[name] for name in dict.fromkeys([*kept, *args.only]) if name in kept]
        header = ("# Benchmarks\n\n" + first + note + f"Sections {', '.join(args.only)} re-run on "
                  f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {setting} (`--only`).\n")
    OUT.write_text(header + "\n" + "\n\n".join(sections) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
