"""`ResumableGenerators`: a DataModule's data generators, created once from its seed and kept in checkpoints.

A DataModule that reseeds its sampler each time a dataloader is created replays epoch 0's windows
after a resume. Mixed into a `LightningDataModule`, this class hands out one `torch.Generator` per
name, seeded once from `self.seed`, and puts their states in the DataModule's `state_dict`, which
Lightning saves in every checkpoint and restores on `--ckpt_path` / `nde-lab fit --resume`.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["ResumableGenerators"]


class ResumableGenerators:
    """Mixin: `data_generator(name)` and a `state_dict`/`load_state_dict` holding every generator's state."""

    seed: int

    def data_generator(self, name: str = "train") -> torch.Generator:
        """The persistent generator `name`, seeded from `self.seed` on first use (never reseeded)."""
        generators: dict[str, torch.Generator] = self.__dict__.setdefault("_data_generators", {})
        if name not in generators:
            generators[name] = torch.Generator().manual_seed(int(self.seed))
        return generators[name]

    def state_dict(self) -> dict[str, Any]:
        generators = self.__dict__.get("_data_generators", {})
        return {"generators": {name: gen.get_state() for name, gen in generators.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name, state in (state_dict or {}).get("generators", {}).items():
            self.data_generator(name).set_state(state)
