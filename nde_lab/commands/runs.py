"""`nde-lab runs [--store S] [--experiment E]`: one line per run with its status, family and headline metric."""

from __future__ import annotations

import argparse
import math
import sys

__all__ = ["main", "runs_table"]

_COLUMNS = {"experiment": "experiment", "run_id": "run", "status": "status", "created": "created",
            "model_family": "family", "metric": "headline metric", "value": "value", "parent": "parent",
            "reason": "reason"}


def runs_table(store: str | None = None, experiment: str | None = None) -> str:
    """The table `nde-lab runs` prints (every column in full, never truncated)."""
    import nde_lab

    frame = nde_lab.list_runs(store)
    if experiment is not None:
        frame = frame[frame["experiment"] == experiment]
    if frame.empty:
        return ""
    rows = []
    for record in frame.to_dict("records"):
        row = {}
        for key, title in _COLUMNS.items():
            value = record.get(key, "")
            if isinstance(value, float):
                value = "" if math.isnan(value) else f"{value:.4g}"
            row[title] = "" if value is None else str(value)
        if record.get("partial"):
            row["status"] += " (partial)"
        rows.append(row)
    titles = list(_COLUMNS.values())
    widths = {t: max(len(t), *(len(r[t]) for r in rows)) for t in titles}
    lines = ["  ".join(t.ljust(widths[t]) for t in titles).rstrip()]
    lines += ["  ".join(r[t].ljust(widths[t]) for t in titles).rstrip() for r in rows]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nde-lab runs", description=__doc__)
    parser.add_argument("--store", default=None, help="run store root (default: $NDE_LAB_STORE or ./store)")
    parser.add_argument("--experiment", default=None, help="only this experiment's runs")
    args = parser.parse_args(argv)
    from nde_lab.store.layout import resolve_store

    root = resolve_store(args.store)
    table = runs_table(args.store, args.experiment)
    if not table:
        what = f"experiment {args.experiment!r} in " if args.experiment else ""
        print(f"nde-lab: no runs in {what}{root}; make one with `nde-lab fit --config recipes/NAME.yaml`.",
              file=sys.stderr)
        return 0
    print(table)
    return 0
