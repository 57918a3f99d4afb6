"""`nde-lab`: the LightningCLI of the lab; every fit, validate, test or predict lands as a run in the store."""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import lightning as L
import torch
from jsonargparse import ActionYesNo
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from nde_lab import cli_hooks as lab_hooks
from nde_lab.cli_parser import LabArgumentParser
from nde_lab.errors import NdeLabError
from nde_lab.lineage import Lineage, expand_run_arguments
from nde_lab.restore import LAST_CHECKPOINT
from nde_lab.safety.imports import enforce_import_policy, prescan_allow_imports
from nde_lab.store.writer import RunWriter
from nde_lab.train.base import LabTask
from nde_lab.train.metrics import MetricsRecorder
from nde_lab.train.progress import progress_trainer_kwargs, silence_lightning

__all__ = ["LabCLI", "main"]

#: Exit status of a run that started and failed (a bad recipe or bad data exits 2, before any run).
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2


class _MarkFailedOnException(L.Callback):
    """Marks the run failed, with the exception as reason, when training raises (or is interrupted)."""

    def __init__(self, cli: LabCLI) -> None:
        self.cli = cli

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.cli.fail_run(exception)


class LabCLI(LightningCLI):
    """LightningCLI with the run store: `--store` (or $NDE_LAB_STORE, default ./store),
    `--experiment` (default: the recipe's file name) and `--run_name` (default: a sortable id)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.run_writer: RunWriter | None = None
        self.metrics_recorder = MetricsRecorder()
        self.lineage: Lineage | None = LabCLI.lineage
        self.allowed_imports: list[str] = list(LabCLI.allowed_imports)
        self.run_notes: dict[str, Any] = {}
        kwargs.setdefault("model_class", LabTask)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("datamodule_class", L.LightningDataModule)
        kwargs.setdefault("subclass_mode_data", True)
        kwargs.setdefault("save_config_callback", None)
        kwargs.setdefault("auto_configure_optimizers", False)
        kwargs.setdefault("trainer_defaults", {"logger": False, "enable_checkpointing": True, "enable_model_summary": False})
        kwargs.setdefault("parser_kwargs", {"default_env": False})
        kwargs.setdefault("parser_class", LabArgumentParser)
        LabCLI.active = self
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--store", type=str | None, default=None, help="run store root (default: $NDE_LAB_STORE or ./store)")
        parser.add_argument("--experiment", type=str | None, default=None, help="experiment name (default: the recipe's file name)")
        parser.add_argument("--run_name", type=str | None, default=None, help="run id (default: UTC timestamp + random suffix)")
        parser.add_argument("--conclusions", type=dict | None, default=None,
                            help="named conclusions collected by `nde-lab sweep` (ignored by a single run)")
        parser.add_argument(
            "--num_threads", type=int | None, default=None,
            help="torch intra-op threads (default: $OMP_NUM_THREADS if set, else 1: the lab's small-tensor "
                 "solves run faster on one thread, and oversubscribed threads can be 20x slower)",
        )
        parser.add_argument("--quiet", action=ActionYesNo, default=False,
                            help="no progress display and a one-line summary (default: a progress bar on a "
                                 "terminal, plain periodic lines otherwise, and a closing summary)")
        lab_hooks.add_arguments(parser)

    # ---- the run's life ----------------------------------------------------------------------------
    def _experiment_name(self, config: Any) -> str:
        if config.get("experiment"):
            return str(config["experiment"])
        recipes = config.get("config") or []
        if recipes:
            return Path(str(recipes[-1])).stem
        class_path = (config.get("model") or {}).get("class_path") if hasattr(config.get("model"), "get") else None
        return str(class_path).rsplit(".", 1)[-1] if class_path else "default"

    def _parse_ckpt_path(self) -> None:
        """Check `--ckpt_path` through the lab's one checkpoint loader (exit 2 naming the file, before a run
        exists) and merge its hyper-parameters under the import allow-list."""
        lab_hooks.check_ckpt_path(self)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        _set_threads(config.get("num_threads"))
        if _launched_rank() == 0:
            self.run_writer = RunWriter(config.get("store"), self._experiment_name(config), config.get("run_name"))
            lab_hooks.loggers_into_run(config, self.run_writer.work_dir)
        # else: a rank > 0 re-executed by a multi-process launcher: rank zero writes the one run

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = self.run_writer.work_dir if self.run_writer is not None else tempfile.gettempdir()
        kwargs.setdefault("default_root_dir", str(root))
        kwargs.update(progress_trainer_kwargs(self._get(self.config_init, "trainer", default={}), quiet=bool(config.get("quiet"))))
        trainer = super().instantiate_trainer(**kwargs)
        if trainer.global_rank != 0:
            self.run_writer = None
        trainer.callbacks.extend([self.metrics_recorder, _MarkFailedOnException(self)])
        return trainer

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[L.Callback]) -> L.Trainer:
        settings = self.config[self.subcommand] if self.subcommand else self.config
        existing = config.get("callbacks") or []
        existing = [*(existing if isinstance(existing, list) else [existing]), *callbacks]
        callbacks.extend(lab_hooks.lab_callbacks(self, settings, existing, config))
        return super()._instantiate_trainer(config, callbacks)

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        kwargs["weights_only"] = True  # never unpickle code from a checkpoint (Lightning's default for URLs is False)
        return kwargs

    def _begin_run(self) -> None:
        if self.run_writer is None:  # not rank zero
            return
        config = self.config[self.subcommand]
        recipe = self._parser(self.subcommand).dump(config, skip_none=False, skip_validation=True)
        seed = config.get("seed_everything")
        self.run_writer.begin(
            recipe_yaml=recipe, seed=None if isinstance(seed, bool) else seed,
            extra={"subcommand": self.subcommand, "model_family": getattr(self.model, "model_family", "unknown"),
                   **lab_hooks.begin_attrs(self)},
        )
        self.run_notes["user_sources"] = lab_hooks.copy_sources(self)
        self._started = time.perf_counter()
        print(f"nde-lab: run {self.run_writer.run_id} of experiment {self.run_writer.experiment!r} "
              f"in {self.run_writer.store}", file=sys.stderr)

    def _complete_run(self) -> None:
        writer = self.run_writer
        if writer is None and self.trainer.world_size > 1:
            # join rank zero's checkpoint barrier (only rank zero writes the file)
            self.trainer.save_checkpoint(Path(tempfile.gettempdir()) / LAST_CHECKPOINT, weights_only=False)
        if writer is None or writer.settled:
            return
        try:
            self.run_notes.update(lab_hooks.restore_best_weights(self))
            self.trainer.save_checkpoint(writer.checkpoint_dir / LAST_CHECKPOINT, weights_only=False)
            self.model.eval()
            with torch.no_grad():
                groups = dict(self.model.run_outputs(self.datamodule))
            for callback in self.trainer.callbacks:  # probes (e.g. nde_lab.theory) contribute their groups
                if callable(getattr(callback, "run_groups", None)):
                    groups.update(callback.run_groups())
            if self.metrics_recorder.rows:
                groups.setdefault("metrics", self.metrics_recorder.dataset())
            final = writer.complete(groups, {"model_family": self.model.model_family, **self.model.run_attrs(),
                                             "world_size": int(self.trainer.world_size), **self.run_notes})
        except BaseException as err:
            self.fail_run(err)
            raise
        self._print_summary(final)

    def _print_summary(self, final: Path) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("quiet"):
            print(f"nde-lab: run complete: {final}", file=sys.stderr)
            return
        from nde_lab.summary import closing_summary

        print(closing_summary(final, wall_time_s=time.perf_counter() - getattr(self, "_started", time.perf_counter())),
              file=sys.stderr)

    def fail_run(self, exception: BaseException) -> None:
        """Mark the current run failed with the exception's message (keeping the metrics so far)."""
        writer = self.run_writer
        if writer is None or writer.settled or not writer.work_dir.exists():
            return
        reason = lab_hooks.failure_reason(exception)
        groups = {"metrics": self.metrics_recorder.dataset()} if self.metrics_recorder.rows else {}
        final = writer.fail(reason, groups, {"model_family": getattr(self.model, "model_family", "unknown")})
        print(f"nde-lab: run FAILED ({reason}); kept, marked failed: {final}", file=sys.stderr)

    before_fit = before_validate = before_test = before_predict = _begin_run
    after_fit = after_validate = after_test = after_predict = _complete_run


LabCLI.active: LabCLI | None = None
LabCLI.lineage: Lineage | None = None
LabCLI.allowed_imports: list[str] = []


def _launched_rank() -> int:
    """This process's rank as set by a multi-process launcher (Lightning's DDP subprocess launcher,
    torchrun, Slurm); 0 for the process the user started. Non-zero ranks never create a run."""
    for name in ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"):
        value = os.environ.get(name, "0")
        if value.isdigit() and int(value) != 0:
            return int(value)
    return 0


def _set_threads(requested: int | None) -> None:
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--num_threads must be >= 1, got {requested}.")
        torch.set_num_threads(requested)
    elif not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(1)


def main(args: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 1 the run failed, 2 bad recipe or data)."""
    argv = list(sys.argv[1:] if args is None else args)
    try:
        argv, LabCLI.lineage = expand_run_arguments(argv)
        LabCLI.allowed_imports = enforce_import_policy(prescan_allow_imports(argv))
    except NdeLabError as err:
        print(f"nde-lab: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return _run(argv)
    finally:
        if LabCLI.lineage is not None:
            LabCLI.lineage.tmpdir.cleanup()


def _run(args: list[str]) -> int:
    # LightningCLI reads the (expanded) arguments from sys.argv, and multi-process launchers (DDP) re-execute
    # sys.argv for the other ranks, so it must hold exactly what this process runs.
    program, sys.argv = sys.argv, [sys.argv[0], *args]
    silence_lightning()
    try:
        LabCLI(args=None)
    except SIGTERMException:
        # Lightning's SIGTERMException subclasses SystemExit with code None: a preempted job must not exit 0.
        print("nde-lab: error: terminated by SIGTERM; the run is marked failed and can be continued with "
              "nde-lab fit --resume RUN.", file=sys.stderr)
        return EXIT_RUN_FAILED
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except (NdeLabError, ValueError, TypeError, FileNotFoundError, KeyboardInterrupt, RuntimeError,
            AssertionError) as err:
        cli = LabCLI.active
        started = cli is not None and cli.run_writer is not None and cli.run_writer.settled
        if started:
            print(f"nde-lab: error: the run failed: {lab_hooks.failure_reason(err)}", file=sys.stderr)
            return EXIT_RUN_FAILED
        if isinstance(err, AssertionError):
            raise
        if not isinstance(err, NdeLabError | ValueError | TypeError | FileNotFoundError):
            traceback.print_exc()
        print(f"nde-lab: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        sys.argv = program
    return 0


if __name__ == "__main__":
    sys.exit(main())
