"""One tiny run per model family, built in-process through the real `nde-lab fit` (shared by the UX tests)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"

#: experiment (= recipe stem) -> overrides that make its fit take a second or two
TINY_FITS: dict[str, tuple[str, ...]] = {
    "spiral_node": ("--trainer.max_epochs", "2", "--data.init_args.batches_per_epoch", "2"),
    "ou_fit": ("--trainer.max_epochs", "2"),
    "gbm_latent_sde": ("--trainer.max_epochs", "2", "--data.init_args.n_paths", "32", "--model.init_args.n_samples", "10"),
    "lotka_volterra_bayes": ("--trainer.max_epochs", "1", "--data.init_args.steps_per_epoch", "3",
                             "--model.init_args.laplace_steps", "30", "--model.init_args.num_proposals", "2000",
                             "--model.init_args.num_draws", "200", "--model.init_args.k_threshold", "10"),
    "rugged_regression_svi": ("--trainer.max_epochs", "1", "--data.init_args.steps_per_epoch", "30"),
    "bayes_neural_ode": ("--trainer.max_epochs", "1", "--data.init_args.steps_per_epoch", "2",
                         "--model.init_args.pretrain_steps", "5", "--model.init_args.num_draws", "25",
                         "--model.init_args.num_prior_draws", "10"),
    "flow_8gaussians": ("--trainer.max_epochs", "1", "--data.init_args.n_train", "512", "--data.init_args.n_val", "256",
                        "--model.init_args.grid_size", "20", "--model.init_args.n_samples", "50"),
    "cnf_checkerboard": ("--trainer.max_epochs", "1", "--data.init_args.n_train", "256", "--data.init_args.n_val", "128",
                         "--data.init_args.batch_size", "128", "--model.init_args.grid_size", "24",
                         "--model.init_args.n_samples", "40"),
    "vae_digits": ("--trainer.max_epochs", "2", "--trainer.limit_train_batches", "5"),
}


def build_store(store: Path, experiments: list[str] | None = None) -> dict[str, tuple[int, str]]:
    """Fit each experiment's recipe in this process (`nde_lab.cli.main`, `--quiet`), tiny budgets;
    returns {experiment: (exit status, what it printed on stderr)}."""
    from nde_lab.cli import main

    results = {}
    for name in experiments or list(TINY_FITS):
        args = ["fit", "--config", str(RECIPES / f"{name}.yaml"), *TINY_FITS[name], "--store", str(store),
                "--quiet"]
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(args)
        results[name] = (code, err.getvalue())
    return results
