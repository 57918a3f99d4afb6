"""`nde-lab show RUN`: a run's status, headline numbers, groups with their dims, metrics, lineage and failure."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nde_lab.commands._runarg import EXIT_BAD_INPUT, add_run_arguments, open_run_arg

__all__ = ["describe", "main"]

_LONG_ATTRS = {"recipe", "library_versions"}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 100 else text[:97] + "..."


def describe(run: Any) -> str:
    """The text `nde-lab show` prints for an opened run."""
    import numpy as np

    from nde_lab.headline import headline_numbers, parameter_estimates, run_reader

    attrs = run.attrs
    reader = run_reader(run)
    lines = [f"run        {run.path}", f"status     {attrs.get('status')}"]
    if attrs.get("failure"):
        lines.append(f"failure    {attrs['failure']}")
    lines += [f"family     {attrs.get('model_family')}", f"created    {attrs.get('created')}  finished {attrs.get('finished', '')}"]
    numbers = headline_numbers(attrs, reader)
    if numbers:
        lines.append("headline   " + ", ".join(f"{k} {_fmt(v)}" for k, v in numbers.items()))
    params = parameter_estimates(reader)
    if params:
        lines.append("fitted     " + ", ".join(f"{k} {_fmt(v)} ± {_fmt(e)}" for k, (v, e) in params.items()))
    lines += ["", "lineage"]
    lines.append(f"  config      {run.path / 'config.yaml'}")
    lines.append(f"  checkpoint  {run.path / 'checkpoints' / 'last.ckpt'}")
    for key in ("parent", "resumed_from", "sweep"):
        if attrs.get(key):
            lines.append(f"  {key:<11} {attrs[key]}")
    lines.append(f"  subcommand  {attrs.get('subcommand', '')}, seed {attrs.get('seed')}, nde-lab {attrs.get('nde_lab_version')}")
    lines += ["", "groups"]
    for name in sorted(run.groups):
        ds = run.group(name)
        dims = ", ".join(f"{d}={n}" for d, n in ds.sizes.items())
        lines.append(f"  {name} ({dims})")
        for var, da in ds.data_vars.items():
            units = f" [{da.attrs['units']}]" if da.attrs.get("units") else ""
            lines.append(f"      {var}{units} {tuple(da.dims)}")
    if "metrics" in run.groups:
        metrics = run.group("metrics")
        lines += ["", f"metrics ({metrics.sizes.get('epoch', 0)} records: first -> last, min)"]
        for var in sorted(metrics.data_vars):
            values = np.asarray(metrics[var].values, dtype=float)
            finite = values[np.isfinite(values)]
            if finite.size and var not in ("step",):
                lines.append(f"  {var:<22} {_fmt(float(finite[0]))} -> {_fmt(float(finite[-1]))}, min {_fmt(float(finite.min()))}")
    lines += ["", "attrs"]
    for key, value in attrs.items():
        if key not in _LONG_ATTRS:
            lines.append(f"  {key:<20} {_fmt(value)}")
    lines.append(f"  (recipe: see config.yaml; library versions: {_fmt(attrs.get('library_versions', {}))})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="nde-lab show", description=__doc__)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    run = open_run_arg(args.run, args.store)
    if run is None:
        return EXIT_BAD_INPUT
    print(describe(run))
    return 0
