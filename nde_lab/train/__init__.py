"""Lightning tasks (LightningModules), one per objective, and the callbacks that feed the run store.

Exports resolve lazily, so naming one task in a recipe imports only its own family (Pyro, torchsde...).
"""

from __future__ import annotations

from nde_lab._lazy import lazy_exports

_EXPORTS = {
    "LabTask": "nde_lab.train.base",
    "MetricsRecorder": "nde_lab.train.metrics",
    "NeuralODETask": "nde_lab.train.node",
    "SDEFitTask": "nde_lab.train.sde_fit",
    "LatentSDETask": "nde_lab.train.latent_sde",
    "BayesTask": "nde_lab.train.bayes",
    "SVITask": "nde_lab.train.bayes",
    "NUTSTask": "nde_lab.train.bayes",
    "FastPosteriorTask": "nde_lab.train.bayes",
    "BayesNeuralODETask": "nde_lab.train.bayes_bnode",
    "DensityTask": "nde_lab.train.flow_tasks",
    "FlowTask": "nde_lab.train.flow_tasks",
    "CNFTask": "nde_lab.train.flow_tasks",
    "VAETask": "nde_lab.train.vae_task",
    "RegressionTask": "nde_lab.train.regression",
}

__all__, __getattr__, __dir__ = lazy_exports("nde_lab.train", _EXPORTS)
