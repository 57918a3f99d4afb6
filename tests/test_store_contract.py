"""The run store as a contract: verified reads, states in listings, latest by time, strict attrs and
names, atomic `save`, concurrent writers, gc (issue 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import nde_lab
from nde_lab.errors import RunConflictError, RunDamagedError, RunNotReadyError, StoreError
from nde_lab.store import RunWriter, list_runs, run_state, validate_name
from nde_lab.store.schema import chunks_for
from tests.store_race import race

ROOT = Path(__file__).resolve().parents[1]


def _groups(n: int = 6):
    rng = np.random.default_rng(0)
    times = np.linspace(0.0, 1.0, 50)
    paths = xr.Dataset({"y": (("sample", "time", "state"), rng.normal(size=(n, 50, 2)))},
                       coords={"time": times, "state": ["a", "b"]})
    metrics = xr.Dataset({"train_loss": ("epoch", [1.0, 0.5])}, coords={"epoch": [0, 1]})
    stats = xr.Dataset({"nfe": ((), 123)})
    return {"trajectories": paths, "metrics": metrics, "solver_stats": stats}


def _complete(store, name="r1", experiment="exp", **attrs):
    writer = RunWriter(store, experiment, name)
    writer.begin(recipe_yaml="model: {}\n", seed=0)
    return writer.complete(_groups(), attrs)


def test_every_chunk_and_metadata_object_of_a_complete_run_is_checked(tmp_path):
    final = _complete(tmp_path)
    files = sorted(p for p in (final / "run.zarr").rglob("*") if p.is_file())
    assert any("/c/" in str(p) for p in files)
    for path in files:
        saved = path.read_bytes()
        path.unlink()
        rel = path.relative_to(final / "run.zarr").parts
        with pytest.raises(RunDamagedError) as info:
            nde_lab.open_run(final).group(rel[0]).load() if len(rel) > 1 else nde_lab.open_run(final)
        if len(rel) > 2:  # a chunk or array metadata: the message names group and variable
            assert f"group {rel[0]!r}, variable {rel[1]!r}" in str(info.value)
        row = list_runs(tmp_path).iloc[0]
        assert row["status"] == "damaged" and "missing" in row["reason"]
        path.write_bytes(saved)
    assert float(nde_lab.open_run(final).group("solver_stats")["nfe"]) == 123


def test_altered_metadata_and_chunks_are_refused(tmp_path):
    final = _complete(tmp_path)
    (final / "run.zarr" / "zarr.json").write_text('{"truncated": ')
    with pytest.raises(RunDamagedError, match="root metadata"):
        nde_lab.open_run(final)
    final2 = _complete(tmp_path, "r2")
    chunk = next(p for p in (final2 / "run.zarr" / "trajectories" / "y").rglob("*") if p.is_file() and "c" in p.parts)
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.raises(RunDamagedError, match="group 'trajectories', variable 'y'.*cannot be read or decoded"):
        nde_lab.open_run(final2, full_check=True)
    # without the full check the run opens (sizes match) and the CRC-32C fails when the chunk is decoded:
    # eagerly, lazily through dask, or one element at a time, always the lab's error naming the variable
    run = nde_lab.open_run(final2)
    for read in (lambda: run.trajectories["y"].load(), lambda: run.group("trajectories", chunks={})["y"].values,
                 lambda: float(run.trajectories["y"][0, 0, 0]), lambda: run.tree["trajectories"]["y"].values):
        with pytest.raises(RunDamagedError, match="group 'trajectories', variable 'y'.*cannot be read or decoded"):
            read()
    assert float(run.group("solver_stats")["nfe"]) == 123  # the undamaged variables still read


def test_latest_is_the_newest_complete_run_by_creation_time(tmp_path):
    for name in ("zzz-first", "mmm-second", "aaa-third"):
        _complete(tmp_path, name)
        time.sleep(0.01)
    failed = RunWriter(tmp_path, "exp", "bbb-failed")
    failed.begin(recipe_yaml="", seed=0)
    failed.fail("boom")
    assert nde_lab.open_run(tmp_path / "exp" / "latest").path.name == "aaa-third"
    (tmp_path / "exp" / "aaa-third" / "run.zarr" / "metrics" / "zarr.json").unlink()  # damaged: skipped
    assert nde_lab.open_run(tmp_path / "exp" / "latest").path.name == "mmm-second"


def test_list_runs_survives_broken_runs_and_partials_never_open(tmp_path):
    good = _complete(tmp_path, "good")
    (tmp_path / "exp" / "junk").mkdir()
    (tmp_path / "exp" / "junk" / "run.zarr").mkdir()
    broken = _complete(tmp_path, "broken")
    (broken / "manifest.json").write_text("{")
    table = list_runs(tmp_path).set_index("run_id")
    assert table.loc["good", "status"] == "complete"
    assert table.loc["junk", "status"] == "damaged" and "never committed" in table.loc["junk", "reason"]
    assert table.loc["broken", "status"] == "damaged" and "not valid JSON" in table.loc["broken", "reason"]
    # a committed run copied back under a partial name is never opened as a run
    partial = tmp_path / "exp" / ".copy.partial"
    os.rename(good, partial)
    with pytest.raises(RunNotReadyError, match="never opened"):
        nde_lab.open_run(partial)
    assert list_runs(tmp_path).set_index("run_id").loc["copy", "status"] == "dead"


def test_live_writers_are_running_dead_ones_are_collected(tmp_path):
    live = RunWriter(tmp_path, "exp", "live")
    live.begin(recipe_yaml="", seed=0)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = RunWriter(tmp_path, "exp", "dead")
        dead.begin(recipe_yaml="", seed=0)
        dead._heartbeat.stop()
        lock = json.loads((dead.work_dir / "lock.json").read_text())
        (dead.work_dir / "lock.json").write_text(json.dumps({**lock, "pid": child.pid}))
        assert run_state(dead.partial).status == "running"  # its (pretend) writer is alive
        child.kill()
        child.wait()
        assert run_state(dead.partial).status == "dead"
        remote_host = {**lock, "host": "elsewhere", "heartbeat": "2000-01-01T00:00:00+00:00"}
        assert run_state(live.partial).status == "running"
        removed = nde_lab.gc(tmp_path)
        assert [r["path"] for r in removed] == [str(dead.work_dir)] and "dead writer" in removed[0]["reason"]
        assert live.work_dir.exists() and not dead.work_dir.exists()
        (live.work_dir / "lock.json").write_text(json.dumps(remote_host))
        assert run_state(live.partial).status == "dead"
    finally:
        child.kill()


@pytest.mark.parametrize("value,key", [
    (torch.ones(2), "tensor"), ({1, 2}, "set"), (b"raw", "bytes"), (object(), "obj"), (Path("/x"), "path"),
])
def test_non_json_attrs_are_refused_naming_the_key(tmp_path, value, key):
    writer = RunWriter(tmp_path, "exp", "r")
    writer.begin(recipe_yaml="", seed=0)
    with pytest.raises(StoreError, match=f"attribute '{key}'"):
        writer.complete(_groups(), {key: value})
    ds = xr.Dataset({"v": ("x", [1.0], {"nested": {key: value}})})
    final = _complete(tmp_path, "ok")
    with pytest.raises(StoreError, match=f"v.nested.{key}"):
        nde_lab.open_run(final).save("extra", ds)


def test_numbers_are_converted_by_the_documented_rule_and_documents_are_strict_json(tmp_path):
    final = _complete(tmp_path, attrs_nan=float("nan"), attrs_np=np.float32(0.5), attrs_arr=np.arange(3),
                      attrs_inf=np.float64(np.inf), attrs_int=np.int64(7))
    run = nde_lab.open_run(final)
    assert run.attrs["attrs_nan"] is None and run.attrs["attrs_inf"] is None
    assert run.attrs["attrs_np"] == 0.5 and run.attrs["attrs_arr"] == [0, 1, 2] and run.attrs["attrs_int"] == 7

    def strict(constant):
        raise AssertionError(f"non-JSON constant {constant}")

    documents = [p for p in final.rglob("*.json")]
    assert len(documents) > 5
    for path in documents:
        json.loads(path.read_text(), parse_constant=strict)


@pytest.mark.parametrize("name", ["ok\n", "ok\r", "", "a b", ".x"])
def test_names_are_matched_whole(name):
    with pytest.raises(StoreError, match="is not a valid name"):
        validate_name(name, "run name")


def test_save_adds_a_group_atomically_with_provenance_and_never_overwrites(tmp_path):
    final = _complete(tmp_path)
    run = nde_lab.open_run(final)
    extra = xr.Dataset({"p": ("level", [0.1, 0.2])}, coords={"level": [1, 2]})
    saved = run.save("analysis", extra, attrs={"note": "by hand"}, provenance={"function": "test", "seed": 3})
    xr.testing.assert_equal(saved.load(), extra)
    reopened = nde_lab.open_run(final)
    assert "analysis" in reopened.groups and reopened.group("analysis").attrs["note"] == "by hand"
    provenance = reopened.group("analysis").attrs["nde_lab_provenance"]
    assert provenance["seed"] == 3 and provenance["function"] == "test" and "xarray" in provenance["library_versions"]
    with pytest.raises(RunConflictError, match="already has a group 'analysis'"):
        reopened.save("analysis", extra)
    reopened.save("analysis", extra * 2, overwrite=True)
    np.testing.assert_allclose(nde_lab.open_run(final).group("analysis")["p"], [0.2, 0.4])
    assert (final / "run.zarr" / "analysis").is_dir()
    with warnings.catch_warnings():  # plain xarray reads the run, consolidated, without a warning
        warnings.simplefilter("error")
        plain = xr.open_datatree(final / "run.zarr", engine="zarr")
    assert set(plain.children) == {"analysis", *_groups()}
    np.testing.assert_allclose(plain["analysis"]["p"], [0.2, 0.4])


def test_a_group_is_opened_once_and_handed_out_as_independent_copies(tmp_path):
    """Repeated queries on one run reopen nothing, yet every `group()` is its own lazy Dataset: data one
    copy loads is neither pinned in the run nor seen by another copy, changes to a copy stay in it, a
    save refreshes the group, and a pickled run reopens its groups."""
    import pickle

    run = nde_lab.open_run(_complete(tmp_path))
    first, second = run.group("trajectories"), run.group("trajectories")
    assert first is not second and len(run._opened) == 1
    first.load()
    assert first["y"].variable._in_memory and not second["y"].variable._in_memory
    first["z"] = first["y"] * 2
    first.attrs["note"] = "mine"
    third = run.group("trajectories")
    assert "z" not in third and "note" not in third.attrs and not third["y"].variable._in_memory
    xr.testing.assert_equal(third.load(), first.drop_vars("z"))
    run.save("analysis", xr.Dataset({"p": ("level", [0.1, 0.2])}))
    run.group("analysis")
    run.save("analysis", xr.Dataset({"p": ("level", [0.3, 0.4])}), overwrite=True)
    np.testing.assert_allclose(run.group("analysis")["p"], [0.3, 0.4])
    clone = pickle.loads(pickle.dumps(run))
    assert clone._opened == {} and float(clone.group("solver_stats")["nfe"]) == 123


def test_groups_open_lazily_with_dask_in_stored_chunks(tmp_path):
    import dask.array

    run = nde_lab.open_run(_complete(tmp_path))
    lazy = run.group("trajectories", chunks={})
    assert isinstance(lazy["y"].data, dask.array.Array) and lazy["y"].data.chunks[1] == (50,)
    assert float(lazy["y"].mean().compute()) == pytest.approx(float(run.trajectories["y"].mean()))
    codecs = json.loads((run.path / "run.zarr" / "trajectories" / "y" / "zarr.json").read_text())["codecs"]
    assert [c["name"] for c in codecs] == ["bytes", "blosc", "crc32c"]
    assert codecs[1]["configuration"] | {"blocksize": 0} == {"cname": "lz4", "clevel": 5, "shuffle": "shuffle",
                                                             "typesize": 8, "blocksize": 0}


def test_four_writers_on_one_name_one_wins_different_names_all_complete(tmp_path):
    outs = race(tmp_path, ["same"] * 4 + ["d1", "d2"])
    same = outs[:4]
    assert sum("WON" in o for o in same) == 1, outs
    assert all("CONFLICT" in o and "same" in o for o in same if "WON" not in o), outs
    assert all("WON" in o for o in outs[4:]), outs
    table = list_runs(tmp_path)
    assert sorted(table["run_id"]) == ["d1", "d2", "same"] and set(table["status"]) == {"complete"}


def test_multi_chunk_variables_are_written_whole_chunk_by_chunk_and_read_back_exactly(tmp_path, monkeypatch):
    import dask.array

    from nde_lab.store import schema

    monkeypatch.setattr(schema, "CHUNK_BYTES", 4000)  # 10 float32 paths of 50 x 2 per chunk
    rng = np.random.default_rng(1)
    y = rng.normal(size=(37, 50, 2)).astype(np.float32)
    z = rng.normal(size=(37, 50, 2))
    z[10:20] = np.nan  # float64: 5 paths per chunk, so chunks 2 and 3 hold fill values only, stored all the same
    lazy = xr.Dataset({"y": (("sample", "time", "state"), y)}).chunk({"sample": 7})  # misaligned dask input
    paths = xr.Dataset({"y": (("sample", "time", "state"), y), "z": (("sample", "time", "state"), z),
                        "k": (("sample",), np.arange(37))})
    writer = RunWriter(tmp_path, "exp", "r")
    writer.begin(recipe_yaml="", seed=0)
    final = writer.complete({"trajectories": paths, "lazy": lazy})
    for group, var, n in [("trajectories", "y", 4), ("trajectories", "z", 8), ("lazy", "y", 4)]:
        assert len([p for p in (final / "run.zarr" / group / var / "c").rglob("*") if p.is_file()]) == n
    run = nde_lab.open_run(final)
    np.testing.assert_array_equal(run.trajectories["y"].values, y)
    np.testing.assert_array_equal(run.trajectories["z"].values, z)
    np.testing.assert_array_equal(run.group("lazy")["y"].values, y)
    assert isinstance(lazy["y"].data, dask.array.Array) and lazy["y"].data.chunks[0][0] == 7  # input untouched


def test_chunks_keep_paths_whole_in_time_and_posteriors_by_chain():
    assert chunks_for(("sample", "time", "state"), (10_000, 1000, 2), 4) == (1048, 1000, 2)
    assert chunks_for(("chain", "draw", "time"), (4, 1000, 5000), 8) == (1, 209, 5000)
    assert chunks_for(("time",), (10,), 8) == (10,)


def test_gc_command_lists_and_removes(tmp_path):
    writer = RunWriter(tmp_path, "exp", "gone")
    writer.begin(recipe_yaml="", seed=0)
    writer._heartbeat.stop()
    lock = json.loads((writer.work_dir / "lock.json").read_text())
    (writer.work_dir / "lock.json").write_text(json.dumps({**lock, "pid": 2**22 + 1}))
    from nde_lab.commands import main

    assert main(["gc", "--store", str(tmp_path), "--dry-run"]) == 0 and writer.work_dir.exists()
    assert main(["gc", "--store", str(tmp_path)]) == 0 and not writer.work_dir.exists()
    assert main(["gc", "--store", "foo://x"]) == 2
