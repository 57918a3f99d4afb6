"""Lightning conventions through `nde-lab`: no prefix abbreviations, short errors naming dotted keys,
user `ModelCheckpoint`/`EarlyStopping` (best weights in the outputs) and loggers inside the run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cli import RECIPES, run_cli, runs_in

import nde_lab
from nde_lab.cli import main
from nde_lab.safety import import_policy

SPIRAL = RECIPES / "spiral_node.yaml"


def _main(*argv: str) -> int:
    with import_policy():
        return main(list(argv))


def test_prefix_abbreviations_are_refused(tmp_path, capsys):
    assert _main("fit", "--config", str(SPIRAL), "--trainer.max_epoch", "3", "--store", str(tmp_path / "s")) == 2
    assert "--trainer.max_epoch" in capsys.readouterr().err
    assert runs_in(tmp_path / "s") == []


@pytest.mark.parametrize(
    "argv,key,value",
    [
        (("--model.init_args.solver.step_size", "abc"), "model.init_args.solver.step_size", "'abc'"),
        (("--data.init_args.batches_per_epoch", "lots"), "data.init_args.batches_per_epoch", "'lots'"),
        (("--model.init_args.vector_field.init_args.width", "fifty"), "model.init_args.vector_field.init_args.width", "'fifty'"),
    ],
)
def test_a_wrong_type_in_a_nested_key_names_the_dotted_key_and_value_in_a_few_lines(tmp_path, capsys, argv, key, value):
    assert _main("fit", "--config", str(SPIRAL), *argv, "--store", str(tmp_path / "s")) == 2
    err = capsys.readouterr().err
    assert f"recipe key '{key}' = {value}" in err, err
    assert len(err.strip().splitlines()) <= 3 and "usage:" not in err


def test_early_stopping_keeps_the_best_weights_and_loggers_write_inside_the_run(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.EarlyStopping\n"
        "      init_args: {monitor: val_mae, patience: 1, mode: min}\n"
        "  logger:\n    class_path: lightning.pytorch.loggers.CSVLogger\n    init_args: {save_dir: csv}\n"
    )
    out = run_cli("fit", "--config", str(SPIRAL), "--config", str(extra), "--experiment", "es", "--trainer.max_epochs", "6",
                  "--data.init_args.batches_per_epoch", "3", store=tmp_path / "s", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = nde_lab.open_run(tmp_path / "s" / "es" / "latest")
    val_mae = run.metrics["val_mae"].values
    best = int(np.argmin(val_mae))
    assert best < len(val_mae) - 1  # early stopping ran past the best epoch: last weights != best weights
    assert run.attrs["outputs_from"] == "best" and run.attrs["best_epoch"] == best
    assert run.attrs["best_score"] == pytest.approx(float(val_mae[best]), rel=1e-6)
    # the stored outputs and the restorable checkpoint are the best weights
    assert float(run.tree["solver_stats"]["full_series_mae"]) == pytest.approx(float(val_mae[best]), rel=1e-5)
    weights = [torch.load(run.path / "checkpoints" / f, weights_only=True)["state_dict"] for f in ("best.ckpt", "last.ckpt")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert list((run.path / "logs").rglob("metrics.csv")) and not (tmp_path / "csv").exists()
