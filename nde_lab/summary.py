"""The closing summary of a run: a few lines with its path, status, wall time and headline numbers."""

from __future__ import annotations

from pathlib import Path

__all__ = ["closing_summary"]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def closing_summary(run_dir: str | Path, *, wall_time_s: float | None = None) -> str:
    """A few lines describing the settled run at `run_dir` (read back from the store)."""
    import nde_lab
    from nde_lab.headline import headline_numbers, parameter_estimates, run_reader

    run = nde_lab.open_run(run_dir, allow_incomplete=True)
    attrs = run.attrs
    reader = run_reader(run)
    status = str(attrs.get("status"))
    head = f"nde-lab: run {status}: {run.path}"
    lines = [head]
    facts = [f"experiment {attrs.get('experiment')}", f"family {attrs.get('model_family')}"]
    if wall_time_s is not None:
        facts.append(f"wall time {wall_time_s:.1f} s")
    lines.append("  " + ", ".join(facts))
    if status == "failed":
        lines.append(f"  failure: {attrs.get('failure')}")
    numbers = headline_numbers(attrs, reader)
    if numbers:
        lines.append("  " + ", ".join(f"{k} {_fmt(v)}" for k, v in numbers.items()))
    params = parameter_estimates(reader)
    if params:
        lines.append("  fitted: " + ", ".join(f"{k} {_fmt(v)} ± {_fmt(e)}" for k, (v, e) in params.items()))
    lines.append(f"  inspect: nde-lab show {run.path}   plot: nde-lab plot {run.path}")
    return "\n".join(lines)
