"""DataModules of stochastic paths: simulated from a known SDE (regular or irregular times) and the Nile series."""

from __future__ import annotations

import csv
import io
from importlib import resources

import lightning as L
import numpy as np
import torch
import xarray as xr
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from nde_lab.dynamics.sde import SDE
from nde_lab.errors import DataError
from nde_lab.solvers.sde import SDESolverOptions, solve_sde

__all__ = ["NileFlow", "PathsDataModule", "SimulatedPaths", "load_nile"]


class _Paths(Dataset):
    def __init__(self, y: Tensor) -> None:
        self.y = y

    def __len__(self) -> int:
        return self.y.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self.y[i]


class PathsDataModule(L.LightningDataModule):
    """Paths observed at shared times, split into training and validation paths.

    Batches are dicts: `t` (T,) observation times, `y` (B, T, D) observations in data units, and
    `observed` (T,) bool, False at the held-out times (never used for training; the latent SDE task
    measures predictive coverage there).

    Subclasses fill `times` (T,), `values` (N, T, D), `state_names`, `time_units`, `units`, `source`.
    """

    times: np.ndarray
    values: np.ndarray
    state_names: list[str]
    time_units: str = "1"
    units: str = "1"
    source: str = ""

    def __init__(self, *, batch_size: int = 64, val_fraction: float = 0.2, holdout_fraction: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise DataError(f"data.batch_size must be >= 1, got {batch_size}.")
        for name, value in (("val_fraction", val_fraction), ("holdout_fraction", holdout_fraction)):
            if not 0.0 <= value < 1.0:
                raise DataError(f"data.{name} must be in [0, 1), got {value}.")
        self.batch_size, self.val_fraction, self.holdout_fraction, self.seed = batch_size, val_fraction, holdout_fraction, seed

    def _split(self) -> None:
        """Choose validation paths and held-out times (seeded); call after `times`/`values` are set."""
        n, n_t = self.values.shape[:2]
        if not np.isfinite(self.values).all():
            raise DataError(f"{self.source}: the observations contain non-finite values.")
        rng = np.random.default_rng(self.seed)
        n_val = round(self.val_fraction * n)
        order = rng.permutation(n)
        self.val_index = np.sort(order[:n_val])
        self.train_index = np.sort(order[n_val:]) if n_val < n else np.arange(n)
        observed = np.ones(n_t, dtype=bool)
        n_hold = round(self.holdout_fraction * (n_t - 1))
        if n_hold:
            observed[1 + rng.choice(n_t - 1, size=n_hold, replace=False)] = False  # t[0] stays observed
        self.observed = observed

    def _batch(self, paths: list[Tensor]) -> dict[str, Tensor]:
        dtype = torch.get_default_dtype()
        return {"t": torch.as_tensor(self.times, dtype=dtype), "y": torch.stack(paths).to(dtype),
                "observed": torch.as_tensor(self.observed)}

    def _loader(self, index: np.ndarray, shuffle: bool) -> DataLoader:
        y = torch.as_tensor(self.values[index])
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(_Paths(y), batch_size=self.batch_size, shuffle=shuffle, collate_fn=self._batch,
                          generator=generator)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_index, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_index if len(self.val_index) else self.train_index, shuffle=False)

    def observed_dataset(self) -> xr.Dataset:
        """The observations as `observed_data`: y (sample, time, state), with split masks."""
        from nde_lab.store.schema import observed_dataset

        split = np.zeros(self.values.shape[0], dtype=np.int8)
        split[self.val_index] = 1
        ds = observed_dataset(self.values.astype(np.float64), self.times, list(self.state_names),
                              time_units=self.time_units, attrs={"source": self.source})
        ds["y"].attrs["units"] = self.units
        return ds.assign(
            validation=("sample", split, {"description": "1 for validation paths"}),
            observed=("time", self.observed.astype(np.int8), {"description": "0 at held-out times"}),
        ).assign_coords(sample=np.arange(self.values.shape[0]))


class SimulatedPaths(PathsDataModule):
    """Paths of a known SDE (the 'truth') simulated at regular or irregular shared times.

    Main arguments:
        sde: the generating SDE with its true parameters (e.g. `OrnsteinUhlenbeck`).
        n_paths: number of paths N.
        n_times: observation times T per path (including t = 0).
        t_end: last observation time (time units).
        x0: initial state (one value broadcast to every coordinate, or D values).

    Other arguments:
        irregular: draw the T - 2 interior times uniformly on (0, t_end) (sorted, seeded) instead of a grid.
        obs_noise: standard deviation of Gaussian observation noise added to each observation.
        sim_dt: simulation step (Euler-Maruyama by default; pick it well below the observation spacing).
        method: SDE method of the simulation.
        batch_size, val_fraction, holdout_fraction: see `PathsDataModule`.
        seed: seed of times, Brownian motion, noise and splits.
    """

    def __init__(
        self,
        sde: SDE,
        *,
        n_paths: int = 200,
        n_times: int = 50,
        t_end: float = 10.0,
        x0: float | list[float] = 0.0,
        irregular: bool = False,
        obs_noise: float = 0.0,
        sim_dt: float = 1e-3,
        method: str = "euler",
        batch_size: int = 64,
        val_fraction: float = 0.2,
        holdout_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, val_fraction=val_fraction, holdout_fraction=holdout_fraction, seed=seed)
        if n_paths < 1 or n_times < 2 or not t_end > 0 or obs_noise < 0:
            raise DataError(
                f"data: need n_paths >= 1, n_times >= 2, t_end > 0, obs_noise >= 0; got {n_paths}, {n_times}, {t_end}, {obs_noise}."
            )
        self.sde, self.irregular, self.obs_noise = sde, irregular, obs_noise
        dim = sde.state_dim
        rng = np.random.default_rng(seed)
        if irregular:
            inner = np.sort(rng.uniform(0.0, t_end, size=n_times - 2))
            self.times = np.concatenate([[0.0], inner, [t_end]])
        else:
            self.times = np.linspace(0.0, t_end, n_times)
        x0_arr = np.broadcast_to(np.asarray(x0, dtype=np.float64), (dim,))
        with torch.no_grad():
            y0 = torch.as_tensor(np.tile(x0_arr, (n_paths, 1)), dtype=torch.float64)
            sol = solve_sde(sde.double(), y0, torch.as_tensor(self.times), seed=seed,
                            options=SDESolverOptions(method=method, dt=sim_dt))
        sde.to(torch.get_default_dtype())
        values = sol.y.permute(1, 0, 2).numpy().copy()
        if obs_noise:
            values = values + obs_noise * rng.standard_normal(values.shape)
        self.values = values
        self.state_names = [f"x{i}" for i in range(dim)] if dim > 1 else ["x"]
        self.source = f"simulated {type(sde).__name__} ({'irregular' if irregular else 'regular'} times, seed {seed})"
        self._split()


def load_nile() -> tuple[np.ndarray, np.ndarray]:
    """The Nile's annual flow at Aswan 1871-1970 (1e8 m^3): years (100,) and flows (100,)."""
    text = resources.files("nde_lab.data").joinpath("files/nile.csv").read_text()
    rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].startswith("#")]
    header, body = rows[0], rows[1:]
    if header != ["year", "flow"]:
        raise DataError(f"nile.csv: expected columns ['year', 'flow'], got {header}.")
    data = np.asarray(body, dtype=np.float64)
    return data[:, 0], data[:, 1]


class NileFlow(PathsDataModule):
    """The Nile annual flow 1871-1970 (Durbin & Koopman 2012; R `datasets::Nile`) as one path.

    Time is the calendar year (1871, ..., 1970), values in 1e8 m^3. With one path there are no validation paths;
    `holdout_fraction` holds out years instead.
    """

    time_units = "year"  # not "years since 1871": CF decoding would turn the coordinate into dates
    units = "1e8 m^3"

    def __init__(self, *, holdout_fraction: float = 0.0, seed: int = 0) -> None:
        super().__init__(batch_size=1, val_fraction=0.0, holdout_fraction=holdout_fraction, seed=seed)
        years, flow = load_nile()
        self.times = years
        self.values = flow[None, :, None]
        self.state_names = ["flow"]
        self.source = "Nile annual flow at Aswan 1871-1970 (Durbin & Koopman 2012; R datasets::Nile)"
        self._split()
