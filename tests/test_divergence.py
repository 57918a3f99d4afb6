"""The divergence guard: training stops at the step where the loss stops being finite or explodes."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import zarr
from cli import RECIPES, run_cli, runs_in

from nde_lab.data import Spiral, TrajectoryDataModule
from nde_lab.dynamics import MLPVectorField
from nde_lab.solvers import ODESolverOptions
from nde_lab.train import NeuralODETask
from nde_lab.train.guard import DivergenceError, DivergenceGuard, translate_library_error


class _NaNAtStep(NeuralODETask):
    """The spiral task whose loss becomes NaN at optimizer step `bad_step` (0-based)."""

    bad_step = 3

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * math.nan if self.global_step == self.bad_step else loss


def _spiral(batches: int = 6) -> TrajectoryDataModule:
    return TrajectoryDataModule(Spiral(n_points=200), window_length=5, windows_per_batch=8, batches_per_epoch=batches)


def test_a_nan_loss_at_step_3_stops_training_at_step_3_before_stepping_on_it():
    task = _NaNAtStep(MLPVectorField(dim=2, width=8, depth=1), ODESolverOptions(method="rk4", step_size=0.1),
                      standardize=False, output_points=10)
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[DivergenceGuard()], num_sanity_val_steps=0)
    with pytest.raises(DivergenceError, match=r"epoch 0, step 3: the loss is nan \(last finite loss \d"):
        trainer.fit(task, datamodule=_spiral())
    assert trainer.global_step == 3  # steps 0, 1, 2 were taken; step 3 was not
    assert all(torch.isfinite(p).all() for p in task.parameters())


def test_an_explosion_beyond_the_factor_of_the_best_loss_stops_training():
    guard = DivergenceGuard(explode_factor=10.0)
    trainer = L.Trainer(logger=False, enable_checkpointing=False)
    for loss in (1.0, 0.5, 0.6, 2.0):  # 2.0 < 0.5 + 10 * 0.5: fine
        guard.check_loss(trainer, torch.tensor(loss))
    with pytest.raises(DivergenceError, match=r"loss 6 exceeds the best loss 0.5 by more than divergence_factor=10"):
        guard.check_loss(trainer, torch.tensor(6.0))
    assert guard.last_finite == 2.0 and guard.best == 0.5


def test_torch_distribution_errors_are_translated_naming_the_parameter():
    with pytest.raises(ValueError) as caught:
        torch.distributions.Normal(torch.tensor([0.0, math.nan]), 1.0)
    translated = translate_library_error(caught.value)
    assert isinstance(translated, DivergenceError)
    assert "parameter 'loc' of the Normal distribution" in str(translated) and "Real()" in str(translated)
    with pytest.raises(ValueError) as caught:
        torch.distributions.Beta(2.0, 2.0).log_prob(torch.tensor([1.5]))
    assert "outside its support" in str(translate_library_error(caught.value))


def test_lr_1e6_on_the_spiral_fails_the_run_with_the_divergence_error(tmp_path):
    store = tmp_path / "s"
    out = run_cli("fit", "--config", str(RECIPES / "spiral_node.yaml"), "--trainer.max_epochs", "3",
                  "--data.init_args.batches_per_epoch", "5", "--model.init_args.optimizer.init_args.lr", "1e6",
                  store=store)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "DivergenceError: training diverged at epoch" in out.stderr
    (run_dir,) = runs_in(store)
    attrs = zarr.open_group(str(run_dir / "run.zarr"), mode="r").attrs
    assert attrs["status"] == "failed" and "training diverged" in attrs["failure"]
    assert "last finite loss" in attrs["failure"]


def test_a_bare_pyro_spline_assertion_is_translated_naming_the_transform():
    import pyro.distributions.transforms as T

    spline = T.Spline(2, count_bins=4, order="quadratic")
    with torch.no_grad():
        spline.unnormalized_widths.fill_(math.nan)  # what a diverged flow's parameters look like
    with pytest.raises(AssertionError) as caught:
        spline.inv(torch.randn(5, 2))
    translated = translate_library_error(caught.value)
    assert isinstance(translated, DivergenceError)
    assert "pyro/distributions/transforms/spline.py" in str(translated) and "_monotonic_rational_spline" in str(translated)
