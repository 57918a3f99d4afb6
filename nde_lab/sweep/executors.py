"""Where sweep points run: the `Executor` interface, a local process pool and Dask distributed.

Every executor runs `nde_lab.sweep.point.run_point` on each task, so every point is its own
`nde-lab fit` process whatever runs it; executors differ only in where that process starts.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from nde_lab.errors import NdeLabError
from nde_lab.sweep.point import PointTask, run_point

__all__ = ["DaskExecutor", "Executor", "InProcessExecutor", "LocalExecutor", "SchedulerUnreachable", "make_executor"]

Done = Callable[[dict[str, Any]], None]


class SchedulerUnreachable(NdeLabError, ConnectionError):
    """The Dask scheduler given with --scheduler did not answer (nothing was run)."""


class Executor(ABC):
    """Runs point tasks; calls `on_done(result)` as each finishes; returns every result."""

    @abstractmethod
    def run(self, tasks: Iterable[PointTask], on_done: Done | None = None) -> list[dict[str, Any]]:
        """Run every task (each in its own process) and return their `run_point` results."""

    def close(self) -> None:  # noqa: B027 (optional hook: most executors hold nothing)
        """Release what the executor started (clusters, clients)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """`workers` points at a time on this machine, each in its own `nde-lab fit` process (the
    threads of the pool only wait on their subprocess)."""

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"--workers must be >= 1, got {workers}.")
        self.workers = workers

    def run(self, tasks: Iterable[PointTask], on_done: Done | None = None) -> list[dict[str, Any]]:
        results = []
        with ThreadPoolExecutor(self.workers) as pool:
            for future in as_completed([pool.submit(run_point, t) for t in tasks]):
                results.append(future.result())
                if on_done:
                    on_done(results[-1])
        return results


class InProcessExecutor(Executor):
    """Points one after another in this process through the same `nde-lab fit` entry point: for cheap
    points (small Bayesian fits in SBC, tests) where a process start costs more than the fit."""

    def run(self, tasks: Iterable[PointTask], on_done: Done | None = None) -> list[dict[str, Any]]:
        import contextlib
        import io
        import time

        from nde_lab.commands import main as nde_lab_main
        from nde_lab.sweep.point import _error_line, settled_status

        results = []
        for task in tasks:
            start = time.perf_counter()
            settled, ran, code = settled_status(task.run_dir), False, 0
            if settled is None:
                err = io.StringIO()
                with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                    code = nde_lab_main(task.fit_argv())
                settled, ran = settled_status(task.run_dir), True
            status, failure = settled if settled else ("failed", _error_line(err.getvalue()) or f"fit exited {code}")
            results.append({"run_name": task.run_name, "status": status, "failure": failure, "returncode": code,
                            "seconds": time.perf_counter() - start, "ran": ran})
            if on_done:
                on_done(results[-1])
        return results


class DaskExecutor(Executor):
    """Points as Dask tasks: an existing cluster (`scheduler="tcp://host:8786"`, e.g. dask-jobqueue's
    SLURMCluster / PBSCluster scheduler) or a `LocalCluster` of `workers` single-threaded processes.

    A task lost with its worker is rescheduled by Dask (up to `distributed.scheduler.allowed-failures`);
    a task that raises is retried `retries` times. `run_point` is idempotent (see `nde_lab.sweep.point`),
    so neither can leave a duplicate or half-visible run. The store must be a path every worker sees.
    """

    def __init__(self, scheduler: str | None = None, workers: int = 1, *, retries: int = 2,
                 connect_timeout: float = 5.0) -> None:
        from distributed import Client, LocalCluster

        self.retries = retries
        self.cluster = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError) as err:
                raise SchedulerUnreachable(
                    f"cannot reach the Dask scheduler at {scheduler!r} within {connect_timeout:g} s ({err}); start one "
                    "with `dask scheduler` and workers with `dask worker ADDRESS`, or drop --scheduler for a LocalCluster."
                ) from None
        else:
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None)
            self.client = Client(self.cluster)

    def run(self, tasks: Iterable[PointTask], on_done: Done | None = None) -> list[dict[str, Any]]:
        from distributed import as_completed as dask_completed

        tasks = list(tasks)
        futures = [self.client.submit(run_point, t, key=f"nde-lab-point-{t.experiment}-{t.run_name}",
                                      retries=self.retries, pure=False) for t in tasks]
        by_key = {f.key: t for f, t in zip(futures, tasks, strict=True)}
        results = []
        for future in dask_completed(futures):
            try:
                result = future.result()
            except Exception as err:  # lost more often than allowed, or raised after every retry
                task = by_key[future.key]
                print(f"nde-lab sweep: point {task.run_name} failed on Dask: {err}", file=sys.stderr)
                result = {"run_name": task.run_name, "status": "failed", "failure": f"dask: {type(err).__name__}: {err}",
                          "returncode": None, "seconds": float("nan"), "ran": True}
            results.append(result)
            if on_done:
                on_done(result)
        return results

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_executor(kind: str = "local", *, workers: int = 1, scheduler: str | None = None, retries: int = 2) -> Executor:
    """An executor by name: "local" (default), "dask" or "inprocess"."""
    if kind == "local":
        if scheduler:
            raise ValueError("--scheduler needs --executor dask.")
        return LocalExecutor(workers)
    if kind == "dask":
        return DaskExecutor(scheduler, workers, retries=retries)
    if kind == "inprocess":
        return InProcessExecutor()
    raise ValueError(f"--executor must be one of 'local', 'dask', 'inprocess'; got {kind!r}.")
