"""Sweeps: one recipe over a grid of settings and seeds, each point an ordinary run, plus a record.

    from nde_lab.sweep import run_sweep
    sweep = run_sweep("recipes/ou_fit.yaml", grid={"data.init_args.n_paths": [50, 100]}, seeds=3, workers=2)
    sweep.summary["parameters.theta"].sel(statistic="mean")

Schema of the record: `nde_lab.sweep.record`; executors: `nde_lab.sweep.executors`; SBC: `nde_lab.sweep.sbc`.
"""

from nde_lab._lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "DaskExecutor": "nde_lab.sweep.executors",
    "Executor": "nde_lab.sweep.executors",
    "InProcessExecutor": "nde_lab.sweep.executors",
    "LocalExecutor": "nde_lab.sweep.executors",
    "SchedulerUnreachable": "nde_lab.sweep.executors",
    "Sweep": "nde_lab.sweep.record",
    "open_sweep": "nde_lab.sweep.record",
    "plan_sweep": "nde_lab.sweep.run",
    "plot_conclusion": "nde_lab.sweep.plots",
    "plot_ranks": "nde_lab.sweep.plots",
    "run_sweep": "nde_lab.sweep.run",
    "run_sbc": "nde_lab.sweep.sbc",
    "open_sbc": "nde_lab.sweep.sbc",
})
