"""The Pyro VAE: ELBO consistency with Pyro's Trace_ELBO, IWAE >= ELBO, SVI training beats a baseline, errors."""

from __future__ import annotations

import ast
import functools
import inspect
import math
import sys

import lightning as L
import pytest
import torch
from pyro.infer import Trace_ELBO

import nde_lab.prob.vae as vae_module
from nde_lab.data.digits import DigitsDataModule
from nde_lab.errors import DataError, RecipeError
from nde_lab.flows import NonFiniteLossError
from nde_lab.prob.vae import VAE, independent_pixel_nll
from nde_lab.train.vae_task import VAETask


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    return DigitsDataModule(binarize=True, batch_size=32, seed=0)


def test_the_pyro_program_imports_no_lightning() -> None:
    tree = ast.parse(inspect.getsource(vae_module))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert "lightning" not in imported and "pytorch_lightning" not in imported
    assert "pyro" in imported


@pytest.mark.parametrize("iaf_layers", [0, 2])
def test_pyro_trace_elbo_matches_the_elbo_estimator(digits: DigitsDataModule, iaf_layers: int) -> None:
    torch.manual_seed(0)
    vae = VAE(latent_dim=4, hidden=[32, 32], iaf_layers=iaf_layers, iaf_hidden=[16])
    x = digits.val_x[:20]
    k = 400
    with torch.no_grad():
        pyro_elbo = -Trace_ELBO(num_particles=k, vectorize_particles=True).differentiable_loss(vae.model, vae.guide, x)
        lw = vae.log_weights(x, k)  # (K, n)
    per_particle = lw.sum(1)  # the batch ELBO of each particle
    se = per_particle.std() / math.sqrt(k)
    assert abs(float(pyro_elbo - per_particle.mean())) < 4 * math.sqrt(2) * float(se)
    # gradients of Pyro's loss reach every parameter, the IAF's included
    loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)
    loss.backward()
    for name, p in vae.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_iwae_is_at_least_the_elbo_and_tightens_with_particles(digits: DigitsDataModule) -> None:
    torch.manual_seed(1)
    vae = VAE(latent_dim=4, hidden=[32, 32])
    x = digits.val_x[:50]
    with torch.no_grad():
        elbo, elbo_se = vae.elbo(x, num_particles=200)
        iwae_1 = torch.stack([vae.iwae(x, num_particles=1)[0] for _ in range(200)]).mean(0)
        iwae_50, iwae_se = vae.iwae(x, num_particles=50)
        iwae_500, _ = vae.iwae(x, num_particles=500)
    se_elbo_mean = float(torch.sqrt((elbo_se**2).sum()) / len(x))
    # K = 1 is the ELBO in expectation
    assert abs(float(iwae_1.mean() - elbo.mean())) < 4 * math.sqrt(2) * se_elbo_mean
    assert float(iwae_50.mean()) >= float(elbo.mean()) - 3 * se_elbo_mean
    assert float(iwae_500.mean()) >= float(iwae_50.mean()) - 3 * float(torch.sqrt((iwae_se**2).sum()) / len(x))
    assert (iwae_se > 0).all() and torch.isfinite(iwae_se).all()


def test_independent_pixel_baseline_is_the_closed_form() -> None:
    train = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    test = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([0.75, 0.75])
    expected = -(torch.log(p[0]) + torch.log(1 - p[1]))
    torch.testing.assert_close(independent_pixel_nll(train, test), expected.reshape(1))
    counts = torch.tensor([[16.0, 0.0], [8.0, 4.0]])
    nll = independent_pixel_nll(counts, counts[:1], likelihood="binomial", total_count=16)
    assert torch.isfinite(nll).all()


@pytest.mark.slow
def test_svi_training_improves_the_heldout_elbo_and_beats_the_baseline(digits: DigitsDataModule) -> None:
    torch.manual_seed(0)
    vae = VAE(latent_dim=8, hidden=[128, 128], iaf_layers=1, iaf_hidden=[32])
    task = VAETask(vae, optimizer=functools.partial(torch.optim.Adam, lr=3e-3), eval_particles=5, iwae_particles=20)
    trainer = L.Trainer(max_epochs=15, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    with torch.no_grad():
        before = float(vae.elbo(digits.val_x, num_particles=5)[0].mean())
    trainer.fit(task, digits)
    metrics = trainer.callback_metrics
    val_elbo, baseline = float(metrics["val_elbo"]), float(metrics["baseline_nll"])
    # stated baseline: independent Bernoulli pixels fitted by ML, 25.2 nats per held-out image
    assert 25.0 < baseline < 25.5
    assert val_elbo > before + 5.0
    assert -val_elbo < baseline - 3.0, f"held-out -ELBO {-val_elbo:.2f} does not beat the baseline {baseline:.2f}"
    assert float(metrics["val_iwae"]) >= val_elbo - 0.05  # IWAE(20) >= ELBO (MC tolerance)
    outputs = task.run_outputs(digits)
    assert outputs["latent"]["z_loc"].shape == (len(digits.val_x), 8)
    assert outputs["reconstruction"]["x_rec"].shape == (len(digits.val_x), 64)
    assert outputs["samples"]["x"].shape == (64, 64)
    ev = outputs["evaluation"]
    assert float(ev["iwae"].mean()) >= float(ev["elbo"].mean()) - 3 * float(ev["elbo_mcse"].mean()) / math.sqrt(len(ev.image))
    # a query on the trained task: IWAE with its MC standard error, reproducible with a seed
    lp = task.query_log_prob(None, digits.val_x[:5].numpy(), num_particles=64, seed=3)
    assert lp.dims == ("sample",) and lp.shape == (5,) and lp.attrs["num_particles"] == 64
    assert (lp["mcse"] > 0).all()
    assert (task.query_log_prob(None, digits.val_x[:5].numpy(), num_particles=64, seed=3) == lp).all()


def test_binomial_likelihood_on_intensities() -> None:
    dm = DigitsDataModule(binarize=False)
    assert float(dm.train_x.max()) == 16.0
    vae = VAE(latent_dim=2, hidden=[16], likelihood="binomial", total_count=16)
    elbo, _ = vae.elbo(dm.val_x[:10], num_particles=2)
    assert elbo.shape == (10,) and torch.isfinite(elbo).all()
    x, mean = vae.sample(3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 64) and float(x.max()) <= 16 and float(mean.max()) <= 16


# ---- errors ----------------------------------------------------------------------------------------
def test_vae_errors_are_named(digits: DigitsDataModule) -> None:
    vae = VAE(latent_dim=2, hidden=[16])
    with pytest.raises(DataError, match=r"data dimension mismatch: the VAE was built for data_dim=64 .*\(3, 10\)"):
        vae.elbo(torch.zeros(3, 10))
    with pytest.raises(DataError, match=r"bernoulli likelihood needs integer pixels in \[0, 1\]; got values in \[0, 16\]"):
        vae.elbo(torch.cat([torch.zeros(1, 64), torch.full((1, 64), 16.0)]))
    with pytest.raises(RecipeError, match=r"VAE.likelihood='gaussian' is not valid"):
        VAE(likelihood="gaussian")
    with pytest.raises(RecipeError, match=r"VAE.activation='sigmoid' is not valid"):
        VAE(activation="sigmoid")
    with pytest.raises(RecipeError, match=r"IAF posterior needs latent_dim >= 2"):
        VAE(latent_dim=1, iaf_layers=1)


def test_non_finite_elbo_is_named(digits: DigitsDataModule) -> None:
    vae = VAE(latent_dim=2, hidden=[16])
    with torch.no_grad():
        vae.decoder[-1].bias.fill_(float("nan"))
    task = VAETask(vae)
    with pytest.raises(NonFiniteLossError, match=r"negative ELBO is non-finite .*at VAETask epoch 0, batch 0"):
        task.training_step((digits.train_x[:8],), 0)
    with torch.no_grad():
        vae.decoder[-1].bias.fill_(0.0)
        vae.decoder[-1].weight.fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match=r"negative ELBO is non-finite"):
        task.training_step((digits.train_x[:8],), 0)


def test_missing_scikit_learn_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match=r"pip install 'nde-lab\[digits\]'"):
        DigitsDataModule()


def test_vae_query_and_data_errors_are_named(digits: DigitsDataModule) -> None:
    task = VAETask(VAE(latent_dim=2, hidden=[16]))
    with pytest.raises(ValueError, match=r"num_particles must be >= 1, got 0"):
        task.query_log_prob(None, digits.val_x[:2].numpy(), num_particles=0)
    with pytest.raises(DataError, match=r"log_prob expects x of shape \(n, 64\), got \(64,\)"):
        task.query_log_prob(None, digits.val_x[0].numpy())
    with pytest.raises(TypeError, match=r"VAETask.vae must be a nde_lab.prob.vae.VAE, got Linear"):
        VAETask(torch.nn.Linear(2, 2))
    with pytest.raises(DataError, match=r"val_fraction must lie in \(0, 1\), got 1.5"):
        DigitsDataModule(val_fraction=1.5)
    with pytest.raises(DataError, match=r"batch_size must be >= 1, got 0"):
        DigitsDataModule(batch_size=0)
