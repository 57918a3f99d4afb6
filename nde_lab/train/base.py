"""`LabTask`: the interface every nde-lab LightningModule implements so the CLI can store it and `Run` can query it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import lightning as L

if TYPE_CHECKING:
    import numpy as np
    import xarray as xr

    from nde_lab.store.schema import RunView as Run

__all__ = ["LabTask"]


class LabTask(L.LightningModule):
    """Base class of the lab's tasks (LightningModules).

    A task declares its `model_family`, returns the run-store groups it produced at the end of fit
    (`run_outputs`), and answers the queries that make sense for its family. A query a family does not
    support raises `TypeError` naming the family and the queries it does support.

    The CLI writes `metrics` (everything the task logs, per epoch) itself; a task only `self.log`s.
    """

    #: A short name stored in the run's root attrs (`neural_ode`, `sde`, `latent_sde`, `bayes_ode`, ...).
    model_family: ClassVar[str] = "unknown"

    def run_outputs(self, datamodule: L.LightningDataModule | None) -> dict[str, xr.Dataset]:
        """Groups to store when fit ends, keyed by DataTree group name (DESIGN.md's names).

        Called once after training on the trained module (in eval mode, under `torch.no_grad` unless
        the task re-enables gradients). Datasets must hold only numeric data and JSON-able attrs.
        """
        return {}

    def run_attrs(self) -> dict[str, Any]:
        """Extra JSON-serialisable root attrs (for instance a sampler's seed)."""
        return {}

    # ---- queries (called by `Run`; `run` gives access to what was stored) -------------------------
    def query_predict(self, run: Run, times: np.ndarray | None, **kwargs: Any) -> xr.Dataset:
        raise self._unsupported("predict")

    def query_sample(self, run: Run, n: int, **kwargs: Any) -> xr.Dataset:
        raise self._unsupported("sample")

    def query_log_prob(self, run: Run, x: np.ndarray, **kwargs: Any) -> xr.DataArray:
        raise self._unsupported("log_prob")

    def _unsupported(self, verb: str) -> TypeError:
        supported = [
            name.removeprefix("query_")
            for name in ("query_predict", "query_sample", "query_log_prob")
            if getattr(type(self), name) is not getattr(LabTask, name)
        ]
        return TypeError(
            f"{verb}() is not available for model family {self.model_family!r} "
            f"({type(self).__name__}); it supports: {', '.join(supported) or 'no queries'}."
        )
