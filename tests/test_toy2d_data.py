"""2-D toy densities: generators, seeding, fresh samples per epoch, known log-densities, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nde_lab.data.toy2d import (
    TOY2D,
    TOY2D_CLASSES,
    Toy2DDataModule,
    toy2d_log_density,
    toy2d_sample,
    toy2d_sample_labelled,
)
from nde_lab.errors import DataError

NAMES = sorted(TOY2D)


@pytest.mark.parametrize("name", NAMES)
def test_generators_are_seeded_2d_and_inside_the_grid(name: str) -> None:
    a = toy2d_sample(name, 5000, seed=1)
    assert a.shape == (5000, 2) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, toy2d_sample(name, 5000, seed=1))
    assert not np.array_equal(a, toy2d_sample(name, 5000, seed=2))
    outside = (np.abs(a) > 4.5).any(axis=1).mean()
    assert outside < 0.002, f"{name}: {outside:.2%} of the points fall outside the default grid"
    assert np.abs(a.mean(0)).max() < 0.35  # centred (FFJORD's two moons sit 0.3 above the origin)


def test_checkerboard_samples_lie_on_the_black_squares_and_entropy_is_log32() -> None:
    x = toy2d_sample("checkerboard", 20000, seed=0)
    lp = toy2d_log_density("checkerboard", x)
    assert np.all(lp == -math.log(32.0))
    counts = np.histogram2d(x[:, 0], x[:, 1], bins=4, range=[[-4, 4], [-4, 4]])[0]
    occupied = counts[counts > 0]
    assert len(occupied) == 8  # the eight squares of the board, equally filled
    expected = len(x) / 8
    chi2 = ((occupied - expected) ** 2 / expected).sum()
    assert chi2 < 24.3  # chi-square(7) 0.999 quantile


@pytest.mark.parametrize("name", ["eight_gaussians", "gaussian_mixture"])
def test_mixture_densities_are_normalised_and_match_their_samples(name: str) -> None:
    g = np.linspace(-6, 6, 601)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    mass = np.exp(toy2d_log_density(name, np.stack([gx.ravel(), gy.ravel()], 1))).sum() * (g[1] - g[0]) ** 2
    assert abs(mass - 1) < 1e-3
    # the samples come from that density: a 2-D histogram against the density's cell masses
    x = toy2d_sample(name, 40000, seed=3)
    edges = np.linspace(-4.5, 4.5, 10)
    counts = np.histogram2d(x[:, 0], x[:, 1], bins=[edges, edges])[0]
    centres = (edges[:-1] + edges[1:]) / 2
    sub = np.linspace(-0.45, 0.45, 10)
    px = (centres[:, None] + sub[None]).reshape(-1)
    qx, qy = np.meshgrid(px, px, indexing="ij")
    dens = np.exp(toy2d_log_density(name, np.stack([qx.ravel(), qy.ravel()], 1))).reshape(9, 10, 9, 10)
    expected = dens.mean(axis=(1, 3)) * (edges[1] - edges[0]) ** 2 * len(x)
    keep = expected > 20
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    dof = keep.sum()
    assert chi2 < dof + 5 * math.sqrt(2 * dof) + 10  # quadrature error of the cell masses included


def test_datamodule_draws_fresh_seeded_samples_every_epoch() -> None:
    dm = Toy2DDataModule("two_moons", n_train=512, n_val=300, batch_size=128, seed=4)
    loader = dm.train_dataloader()
    epoch0 = torch.cat(list(loader))
    epoch1 = torch.cat(list(loader))
    assert epoch0.shape == (512, 2) and epoch1.shape == (512, 2)
    assert not torch.equal(epoch0, epoch1)
    again = Toy2DDataModule("two_moons", n_train=512, n_val=300, batch_size=128, seed=4)
    torch.testing.assert_close(torch.cat(list(again.train_dataloader())), epoch0)
    torch.testing.assert_close(again.val_x, dm.val_x)  # a fixed held-out set
    (val,) = next(iter(dm.val_dataloader()))
    assert val.shape == (300, 2)
    assert dm.dim == 2 and tuple(dm.coord_names) == ("x", "y")


@pytest.mark.parametrize("name", NAMES)
def test_labels_name_the_part_each_point_came_from(name: str) -> None:
    x, labels = toy2d_sample_labelled(name, 4000, seed=5)
    np.testing.assert_array_equal(x, toy2d_sample(name, 4000, seed=5))
    classes = TOY2D_CLASSES[name]
    counts = np.bincount(labels, minlength=classes)
    assert len(counts) == classes and (counts > 4000 / classes / 2).all()  # every part is populated
    # the parts are distinct: their centroids are separated by more than sampling noise
    centroids = np.stack([x[labels == k].mean(0) for k in range(classes)])
    gaps = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)[~np.eye(classes, dtype=bool)]
    if name != "circles":  # concentric circles share a centre; their radii differ instead
        assert gaps.min() > 0.3
    else:
        radius = np.linalg.norm(x, axis=1)
        assert radius[labels == 1].mean() < 0.6 * radius[labels == 0].mean()


def test_label_context_batches_are_one_hot() -> None:
    dm = Toy2DDataModule("pinwheel", n_train=256, n_val=100, batch_size=64, seed=0, context="label")
    x, ctx = next(iter(dm.train_dataloader()))
    assert x.shape == (64, 2) and ctx.shape == (64, 5) and torch.equal(ctx.sum(1), torch.ones(64))
    vx, vctx = next(iter(dm.val_dataloader()))
    assert vx.shape == (100, 2) and torch.equal(vctx.argmax(1), dm.val_labels)


def test_toy2d_errors_are_named() -> None:
    with pytest.raises(DataError, match=r"data.context='class' is not valid; must be one of 'none', 'label'"):
        Toy2DDataModule("pinwheel", context="class")
    with pytest.raises(DataError, match=r"data.name='moons' is not valid; must be one of .*'two_moons'"):
        Toy2DDataModule("moons")
    with pytest.raises(DataError, match=r"needs n_train, n_val, batch_size >= 1"):
        Toy2DDataModule("circles", n_train=0)
    with pytest.raises(DataError, match=r"density of 'pinwheel' has no closed form"):
        toy2d_log_density("pinwheel", np.zeros((1, 2)))
    with pytest.raises(DataError, match=r"toy2d name='spiral' is not valid"):
        toy2d_sample("spiral", 3, seed=0)
