"""The run layout in one place: group names, dims, the encoding of every variable, and the small
protocol tasks read a stored run through.

Groups and dims follow ArviZ's InferenceData where one exists (docs/architecture.md has the table).
Tasks produce groups with these names from `run_outputs` and read them back through `RunView`
(`attrs` and `group(name)`), never through the tree layout.
"""

from __future__ import annotations

import itertools
import math
import uuid
from typing import Any, Protocol, runtime_checkable

import numpy as np
import xarray as xr

__all__ = [
    "CHUNK_BYTES",
    "COMPRESSION_LEVEL",
    "COMPRESSOR",
    "DRAW_DIMS",
    "GROUPS",
    "RunView",
    "chunks_for",
    "compressors",
    "encode_group",
    "in_chunks",
    "observed_dataset",
    "split_constant_data",
]

#: group name -> (what it holds, its leading dims); the reader, the writer and the docs use this table.
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "observed_data": ("the observations a run was fitted to", ("time", "state")),
    "constant_data": ("covariates and other inputs that are not observed outcomes", ()),
    "trajectories": ("fitted trajectories or path ensembles", ("sample", "time", "state")),
    "summary": ("mean, sd, quantiles, MCSE; per-parameter R-hat and ESS", ()),
    "parameters": ("maximum likelihood values and standard errors", ("parameter",)),
    "posterior": ("posterior draws", ("chain", "draw")),
    "prior": ("prior draws", ("chain", "draw")),
    "posterior_predictive": ("posterior predictive draws", ("chain", "draw")),
    "prior_predictive": ("prior predictive draws", ("chain", "draw")),
    "log_likelihood": ("pointwise log-likelihood draws", ("chain", "draw")),
    "sample_stats": ("sampler statistics", ("chain", "draw")),
    "samples": ("generated samples x (sample, dim)", ("sample", "dim")),
    "density": ("log-density on a grid", ("x", "y")),
    "latent": ("latent codes", ("image",)),
    "reconstruction": ("reconstructions", ("image",)),
    "evaluation": ("held-out evaluation", ()),
    "metrics": ("every logged metric along epoch", ("epoch",)),
    "solver_stats": ("NFE, steps, masked paths", ()),
    # theory probes (nde_lab.theory callbacks; docs/theory.md)
    "ntk": ("empirical NTK, eigenvalues, drift (and the analytic kernel) along training", ("epoch",)),
    "hessian": ("top Hessian eigenvalues (sharpness), trace along training", ("epoch",)),
    "hessian_final": ("Hessian spectrum at the end: SLQ density, top eigenvalues", ()),
    "weight_change": ("relative change of the weights from init", ("epoch",)),
    "linearized": ("network vs its linearisation around init", ("epoch",)),
    "coordinate_check": ("per-layer activation and update sizes per step", ("step", "layer")),
    "pruning": ("loss and MAE after magnitude pruning", ("amount",)),
    "function": ("the trained network on shared inputs", ("point",)),
}

#: dims along which draws are independent: each chunk holds whole draws (a path contiguous in time)
DRAW_DIMS = ("chain", "sample", "path", "draw", "image")
#: target size of one chunk before compression
CHUNK_BYTES = 8 << 20
#: Blosc compressor and level of every numeric variable: LZ4 after a byte shuffle (by item size).
#: On float paths it is both faster and smaller than Zstandard (bench_store; docs/benchmarks.md).
COMPRESSOR = "lz4"
COMPRESSION_LEVEL = 5


@runtime_checkable
class RunView(Protocol):
    """What a task may read from a stored run: its root attrs and its groups by name."""

    @property
    def attrs(self) -> dict[str, Any]: ...

    def group(self, name: str, chunks: Any = None) -> xr.Dataset: ...


def chunks_for(dims: tuple[str, ...], shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Chunk shape for a variable: whole along every non-draw dim, as many draws as fit in
    `CHUNK_BYTES`; posterior-like variables one chain per chunk."""
    if not shape:
        return ()
    chunk = list(shape)
    total = math.prod(shape) * itemsize
    if total <= CHUNK_BYTES:
        return tuple(max(1, s) for s in chunk)
    if dims and dims[0] == "chain":
        chunk[0] = 1
    for axis, dim in enumerate(dims):
        if math.prod(chunk) * itemsize <= CHUNK_BYTES:
            break
        if dim in DRAW_DIMS or axis == 0:
            inner = math.prod(chunk[axis + 1:]) * itemsize
            chunk[axis] = max(1, min(chunk[axis], CHUNK_BYTES // max(inner, 1)))
    return tuple(max(1, c) for c in chunk)


def compressors() -> list[Any]:
    """The Zarr v3 bytes-to-bytes codecs of every numeric chunk: Blosc (`COMPRESSOR` at
    `COMPRESSION_LEVEL`, byte shuffle), then a CRC-32C of the stored bytes, so a damaged chunk fails
    when decoded (both codecs are in the Zarr v3 core specification)."""
    from zarr.codecs import BloscCodec, Crc32cCodec

    return [BloscCodec(cname=COMPRESSOR, clevel=COMPRESSION_LEVEL, shuffle="shuffle"), Crc32cCodec()]


def encode_group(name: str, dataset: xr.Dataset) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
    """`dataset` ready for Zarr v3 (fixed-width strings as variable-length UTF-8, encodings dropped)
    and its encoding: chunks from `chunks_for` and `compressors()` for numbers.

    A numeric variable of more than one chunk is returned dask-backed in exactly its Zarr chunks, so
    the write hands Zarr whole chunks (no merge of each chunk into a fill-valued buffer, chunks
    encoded on every core); write it under `writer.writing()` (dask's local threads)."""
    from nde_lab.store.attrs import jsonable

    dataset = dataset.copy()
    dataset.attrs = jsonable(dict(dataset.attrs), name)
    for var_name, var in dataset.variables.items():
        var.attrs = jsonable(dict(var.attrs), f"{name}/{var_name}")
    fixed = [n for n, var in dataset.variables.items() if var.dtype.kind == "U"]
    dataset = dataset.assign_coords({n: dataset[n].astype(object) for n in fixed if n in dataset.coords}).assign(
        {n: dataset[n].astype(object) for n in fixed if n in dataset.data_vars}
    )
    encoding: dict[str, dict[str, Any]] = {}
    aligned = {}
    for var_name, var in dataset.variables.items():
        var.encoding = {}
        if var.dtype.kind in "biufc" and var.ndim:
            chunks = chunks_for(tuple(map(str, var.dims)), var.shape, var.dtype.itemsize)
            encoding[str(var_name)] = {"chunks": chunks, "compressors": compressors()}
            if var_name in dataset.data_vars and chunks != var.shape:
                aligned[var_name] = in_chunks(var, chunks)
    return dataset.assign(aligned), encoding


def in_chunks(var: xr.Variable, chunks: tuple[int, ...]) -> xr.Variable:
    """`var` as a dask array in exactly `chunks`. In-memory data becomes views of itself: neither
    copied nor hashed, which `Variable.chunk` (dask's `from_array`) would do to the whole array."""
    import dask.array

    if isinstance(var.data, dask.array.Array):
        return var.chunk(dict(zip(var.dims, chunks, strict=True)))
    values = np.asarray(var.values)
    name = f"nde-lab-{uuid.uuid4().hex}"
    starts = [range(0, size, step) for size, step in zip(values.shape, chunks, strict=True)]
    graph = {(name, *(o // c for o, c in zip(origin, chunks, strict=True))):
             values[tuple(slice(o, o + c) for o, c in zip(origin, chunks, strict=True))]
             for origin in itertools.product(*starts)}
    blocks = tuple(tuple(min(c, size - o) for o in range(0, size, c)) for size, c in zip(values.shape, chunks, strict=True))
    return var.copy(deep=False, data=dask.array.Array(graph, name, blocks, dtype=values.dtype,
                                                      meta=np.empty((0,) * values.ndim, values.dtype)))


def observed_dataset(y: np.ndarray, times: np.ndarray, states: list[str], *, time_units: str = "",
                     attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """A time series as the run layout has it (`observed_data`, `trajectories`): `y` with dims
    (time, state), or (sample, time, state) for a leading batch dim; `time` with its units; `state`
    names. Used by every task that stores series."""
    y = np.asarray(y)
    dims = ("time", "state") if y.ndim == 2 else ("sample", "time", "state")
    return xr.Dataset(
        {"y": (dims, y)},
        coords={"time": ("time", np.asarray(times, dtype=np.float64), {"units": time_units}), "state": list(states)},
        attrs=attrs or {},
    )


#: variables of an observations Dataset that are inputs (covariates), not observed outcomes
COVARIATES = ("x",)


def split_constant_data(observed: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset | None]:
    """(`observed_data`, `constant_data`): covariates (`COVARIATES`) go to `constant_data`, as ArviZ
    expects (its `plot_ppc` and `loo` treat every `observed_data` variable as an outcome)."""
    inputs = [name for name in COVARIATES if name in observed.data_vars]
    if not inputs:
        return observed, None
    constant = observed[inputs]
    outcome = observed.drop_vars(inputs)
    used = {d for var in outcome.data_vars.values() for d in var.dims}
    unused = [c for c in outcome.coords if not set(outcome[c].dims) & used]
    return outcome.drop_vars(unused), constant
