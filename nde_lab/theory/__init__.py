"""Theory probes: NTK (empirical and infinite-width), parametrisations and width, Hessian spectra, edge of
stability, linearised training, seed and pruning robustness. Mathematics and references: docs/theory.md.

Every probe is a function on a network (an `nn.Module`, a task or an opened `Run`) returning xarray
objects with named dims, and the probes that follow training are Lightning callbacks a recipe lists under
`trainer.callbacks` (their groups are stored in the run). Exports resolve lazily.
"""

from __future__ import annotations

from nde_lab._lazy import lazy_exports

_EXPORTS = {
    "empirical_ntk": "nde_lab.theory.tangent_kernel",
    "flow_map_ntk": "nde_lab.theory.tangent_kernel",
    "kernel_dataset": "nde_lab.theory.tangent_kernel",
    "ntk": "nde_lab.theory.tangent_kernel",
    "relative_drift": "nde_lab.theory.tangent_kernel",
    "infinite_width_kernels": "nde_lab.theory.kernels",
    "HessianOperator": "nde_lab.theory.curvature",
    "half_mse": "nde_lab.theory.curvature",
    "hessian_spectrum": "nde_lab.theory.curvature",
    "hutchinson_trace": "nde_lab.theory.curvature",
    "lanczos_top": "nde_lab.theory.curvature",
    "sharpness": "nde_lab.theory.curvature",
    "slq": "nde_lab.theory.curvature",
    "pruning_curve": "nde_lab.theory.pruning",
    "TheoryProbe": "nde_lab.theory.callbacks",
    "NTKProbe": "nde_lab.theory.callbacks",
    "HessianProbe": "nde_lab.theory.callbacks",
    "WeightChangeProbe": "nde_lab.theory.callbacks",
    "CoordinateCheck": "nde_lab.theory.callbacks_training",
    "LinearizedProbe": "nde_lab.theory.callbacks_training",
    "PruningProbe": "nde_lab.theory.callbacks_training",
    "FunctionSnapshot": "nde_lab.theory.callbacks_training",
    "width_slopes": "nde_lab.theory.analysis",
    "gather": "nde_lab.theory.analysis",
    "optimum_shift": "nde_lab.theory.analysis",
    "edge_of_stability_summary": "nde_lab.theory.analysis",
    "function_distances": "nde_lab.theory.seeds",
    "align_hidden_units": "nde_lab.theory.seeds",
    "seed_robustness": "nde_lab.theory.seeds",
    "loss_barrier": "nde_lab.theory.seeds",
}

__all__, __getattr__, __dir__ = lazy_exports("nde_lab.theory", _EXPORTS)
