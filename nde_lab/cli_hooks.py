"""What `LabCLI` adds to LightningCLI for safety and resumability, kept out of `cli.py` as hooks.

- arguments: `--allow_import`, `--divergence_factor`, `--allow_untrained`, `--from_run`, `--resume`;
- `check_ckpt_path`: every `--ckpt_path` through `nde_lab.checkpoints.load_checkpoint` (exit 2 naming
  the file before a run exists); its hyper-parameters parsed under the import allow-list;
- `lab_callbacks`: `RngState`, `DivergenceGuard` and the default `LabCheckpoint` (inside the run);
- `loggers_into_run`: CSV/TensorBoard loggers with a relative `save_dir` write under `<run>/logs/`;
- `restore_best_weights`: with `EarlyStopping`, the run's outputs come from the best checkpoint;
- `begin_attrs` / `copy_sources` / `failure_reason`: provenance, lineage and the failure text.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

from nde_lab.checkpoints import CheckpointError, load_checkpoint
from nde_lab.provenance import SOURCES_DIR, copy_user_sources, run_provenance
from nde_lab.safety.imports import DEFAULT_ALLOWED
from nde_lab.train.guard import DivergenceGuard, translate_library_error
from nde_lab.train.resume import LabCheckpoint, RngState

if TYPE_CHECKING:
    from nde_lab.cli import LabCLI

__all__ = [
    "add_arguments",
    "begin_attrs",
    "check_ckpt_path",
    "copy_sources",
    "failure_reason",
    "lab_callbacks",
    "loggers_into_run",
    "restore_best_weights",
]

#: Lightning's special `ckpt_path` values: they name checkpoints of an earlier fit in the same process.
SPECIAL_CKPT = ("last", "best", "hpc", "registry")
EVALUATION = ("validate", "test", "predict")
_LOGGERS_WITH_SAVE_DIR = ("CSVLogger", "TensorBoardLogger")


def add_arguments(parser: Any) -> None:
    parser.add_argument("--allow_import", type=list[str] | str | None, default=None,
                        help="module prefixes a recipe may import besides nde_lab, torch, lightning and pyro "
                             "(also $NDE_LAB_ALLOW_IMPORT, or `allow_import: [...]` in the recipe)")
    parser.add_argument("--divergence_factor", type=float | None, default=1e4,
                        help="stop when the loss exceeds best + factor * |best| (null: only non-finite values stop)")
    parser.add_argument("--allow_untrained", type=bool, default=False,
                        help="validate/test/predict without a checkpoint (an untrained model)")
    parser.add_argument("--from_run", type=str | None, default=None,
                        help="a run (directory or <store>/<experiment>/latest) whose recipe and checkpoint to start from")
    parser.add_argument("--resume", type=str | None, default=None,
                        help="fit: continue a killed or failed run exactly, as a new run naming it as parent")


def check_ckpt_path(cli: LabCLI) -> None:
    """Validate `--ckpt_path` and merge its hyper-parameters (LightningCLI's `_parse_ckpt_path`, made safe)."""
    subcommand = cli.config.get("subcommand")
    if not subcommand:
        return
    config = cli.config[subcommand]
    ckpt_path = config.get("ckpt_path")
    if ckpt_path in SPECIAL_CKPT:
        if cli.lineage is None:
            raise CheckpointError(
                f"--ckpt_path {ckpt_path}: a new run has no earlier checkpoint to resume; pass a checkpoint file, "
                "or continue a run with nde-lab fit --resume RUN (or --from_run RUN)."
            )
        config["ckpt_path"] = ckpt_path = str(cli.lineage.checkpoint)
    if not ckpt_path:
        if subcommand in EVALUATION and not config.get("allow_untrained"):
            raise CheckpointError(
                f"nde-lab {subcommand} needs a trained model: pass --ckpt_path FILE or --from_run RUN "
                "(or --allow_untrained to evaluate an untrained model on purpose)."
            )
        return
    state = load_checkpoint(ckpt_path)
    config["ckpt_path"] = str(Path(ckpt_path).expanduser().resolve())
    hparams = dict(state.get("hyper_parameters") or {})
    hparams.pop("_instantiator", None)
    if not hparams:
        return
    if "_class_path" in hparams:
        hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
    # parsed under the import allow-list enforced in main(): a denied class path is never imported
    cli.config = cli.parser.parse_object({subcommand: {"model": hparams}}, cli.config)


def loggers_into_run(config: Any, run_dir: Path) -> None:
    """Point CSV/TensorBoard loggers whose `save_dir` is relative (or unset) into `<run>/logs/`."""
    trainer = config.get("trainer") or {}
    loggers = trainer.get("logger") if hasattr(trainer, "get") else None
    for spec in loggers if isinstance(loggers, list) else [loggers]:
        class_path = getattr(spec, "class_path", None) if spec is not None else None
        if not class_path or not str(class_path).endswith(_LOGGERS_WITH_SAVE_DIR):
            continue
        save_dir = spec.init_args.get("save_dir")
        if save_dir is None or not Path(str(save_dir)).is_absolute():
            spec.init_args["save_dir"] = str(run_dir / "logs" / str(save_dir or ""))


def lab_callbacks(cli: LabCLI, settings: Any, existing: list[L.Callback], trainer_config: dict[str, Any]) -> list[L.Callback]:
    """The callbacks every run gets: random states in checkpoints, the divergence guard, and (unless the
    recipe brings its own `ModelCheckpoint` or turns checkpointing off) `last.ckpt`/`best.ckpt` every epoch."""
    added: list[L.Callback] = [RngState(), DivergenceGuard(settings.get("divergence_factor", 1e4))]
    if trainer_config.get("enable_checkpointing") is not False and not any(isinstance(c, ModelCheckpoint) for c in existing):
        stopper = next((c for c in existing if isinstance(c, EarlyStopping)), None)
        monitor = stopper.monitor if stopper else getattr(cli.model, "checkpoint_monitor", "train_loss")
        # ranks > 0 have no run: Lightning broadcasts rank zero's checkpoint directory to them
        dirpath = str(cli.run_writer.checkpoint_dir) if cli.run_writer is not None else None
        added.append(LabCheckpoint(dirpath, monitor=monitor,
                                   mode=stopper.mode if stopper else "min", before_save=cli.metrics_recorder.refresh))
    return added


def restore_best_weights(cli: LabCLI) -> dict[str, Any]:
    """After fit: record the best checkpoint; with `EarlyStopping`, load its weights for the run's outputs."""
    trainer = cli.trainer
    if cli.subcommand != "fit" or trainer.checkpoint_callback is None:
        return {}
    best = getattr(trainer.checkpoint_callback, "best_model_path", "")
    if not best or not Path(best).is_file():
        return {}
    score = trainer.checkpoint_callback.best_model_score
    notes: dict[str, Any] = {"best_checkpoint": f"checkpoints/{Path(best).name}",
                             "best_monitor": str(trainer.checkpoint_callback.monitor),
                             "best_score": None if score is None else float(score), "outputs_from": "last"}
    if any(isinstance(c, EarlyStopping) for c in trainer.callbacks):
        state = load_checkpoint(best)
        cli.model.load_state_dict(state["state_dict"])
        notes.update(outputs_from="best", best_epoch=int(state.get("epoch", -1)))
    return notes


def begin_attrs(cli: LabCLI) -> dict[str, Any]:
    """Root attrs written when the run begins: provenance, the allow-list, the parent run."""
    attrs: dict[str, Any] = {**run_provenance(), "allowed_imports": list(cli.allowed_imports)}
    if cli.lineage is not None:
        attrs.update(cli.lineage.attrs())
    return attrs


def copy_sources(cli: LabCLI) -> list[str]:
    """Copy the user modules the recipe imported into `<run>/sources/`; returns their names."""
    user = [p for p in cli.allowed_imports if p not in DEFAULT_ALLOWED]
    return copy_user_sources(user, cli.run_writer.work_dir / SOURCES_DIR) if user else []


def failure_reason(exception: BaseException) -> str:
    """The text stored as the run's `failure` and printed by the CLI."""
    if isinstance(exception, SIGTERMException):
        return "SIGTERMException: terminated by SIGTERM (preempted); continue it with nde-lab fit --resume RUN"
    translated = translate_library_error(exception)
    if translated is not None:
        exception = translated
    return f"{type(exception).__name__}: {exception}" if str(exception) else type(exception).__name__
