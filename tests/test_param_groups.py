"""Per-layer learning rates from the parametrisation for every task whose network is a lab MLP."""

from __future__ import annotations

import pytest
import torch

from nde_lab.dynamics import MLPVectorField
from nde_lab.dynamics.parametrization import layer_scales
from nde_lab.train import NeuralODETask
from nde_lab.train.param_groups import build_optimizer

LR = 0.01


def _task(parametrization: str, optimizer=torch.optim.SGD) -> NeuralODETask:
    torch.manual_seed(0)
    field = MLPVectorField(2, width=128, depth=2, parametrization=parametrization, base_width=32)
    return NeuralODETask(field, optimizer=lambda params: optimizer(params, lr=LR))


@pytest.mark.parametrize(("optimizer", "kind"), [(torch.optim.SGD, "sgd"), (torch.optim.Adam, "adam")])
def test_neural_ode_task_gets_the_abc_tables_per_layer_rates(optimizer, kind):
    task = _task("mup", optimizer)
    opt = task.configure_optimizers()
    field = task.vector_field
    scales = layer_scales("mup", field.fan_ins, base_width=32, optimizer=kind)
    expected = [LR * f for s in scales for f in (s.weight_lr, s.bias_lr)]
    got = [g["lr"] for g in opt.param_groups]
    assert got == pytest.approx(expected) and len(got) == 2 * len(field.fan_ins)
    # muP's rates differ across layers (here: not all equal to the base rate), and every parameter is optimised once
    assert len(set(round(v, 12) for v in got)) > 1
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in task.parameters()) and len(set(ids)) == len(ids)


def test_standard_parametrisation_keeps_one_group_and_identical_steps():
    task = _task("standard")
    opt = task.configure_optimizers()
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["lr"] == LR
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in task.parameters()]


def test_lbfgs_with_a_parametrised_network_names_the_problem():
    task = _task("mup")
    with pytest.raises(ValueError, match="per-layer learning rates.*parametrization='mup'"):
        build_optimizer(lambda params: torch.optim.LBFGS(params, lr=1.0), task)
