"""`RecipePoint`: one grid point of a theory recipe, fitted in-process (the recipe's task, data, trainer and
probes, without writing a run). A test's or notebook's grid over width, seed or lr is a plain loop over
`fit`; the product path for grids is `nde-lab sweep` (docs/theory.md), whose points are ordinary runs."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import xarray as xr

__all__ = ["RecipePoint"]


class RecipePoint:
    """Parse a recipe once (`nde-lab fit --config recipe *args`, validated as the CLI does), then fit points.

    `fit(overrides, seed=...)` takes dotted recipe keys: `fit({"model.init_args.lr": 0.1}, seed=1)`. Returns the groups the probes stored
    plus `metrics` and `evaluation`, as a dict of Datasets (the groups a run of that point would hold);
    the trained task is kept as `last_model`.
    """

    def __init__(self, recipe: str | Path, args: Sequence[str] = ()) -> None:
        from nde_lab.cli import LabCLI

        self._store = tempfile.mkdtemp(prefix="nde_lab_point_")
        self.cli = LabCLI(args=["--config", str(recipe), *args, "--store", self._store], run=False)

    def fit(self, overrides: dict[str, Any] | None = None, *, seed: int | None = None) -> dict[str, xr.Dataset]:
        from nde_lab.train.metrics import MetricsRecorder

        cfg = self.cli.config.clone()
        for key, value in (overrides or {}).items():
            if key not in cfg:
                raise KeyError(f"{key!r} is not a key of the recipe; keys look like 'model.init_args.lr'.")
            cfg[key] = value
        if seed is not None:
            cfg["seed_everything"] = seed
        L.seed_everything(cfg["seed_everything"], verbose=False)
        init = self.cli.parser.instantiate_classes(cfg)
        recorder = MetricsRecorder()
        trainer_kwargs = {k: v for k, v in vars(init["trainer"]).items() if v is not None}
        trainer_kwargs["callbacks"] = [*(trainer_kwargs.get("callbacks") or []), recorder]
        trainer_kwargs.update(logger=False, enable_checkpointing=False, default_root_dir=self._store)
        trainer = L.Trainer(**trainer_kwargs)
        model, data = init["model"], init["data"]
        trainer.fit(model, data)
        model.eval()
        self.last_model = model
        groups = dict(model.run_outputs(data))
        for callback in trainer.callbacks:
            if callable(getattr(callback, "run_groups", None)):
                groups.update(callback.run_groups())
        if recorder.rows:
            groups["metrics"] = recorder.dataset()
        return groups
