"""Stores anywhere fsspec reaches: `memory://` in process, `s3://` against a real S3-protocol server
(moto's standalone server on 127.0.0.1) through s3fs, and unknown schemes refused (issue 8)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nde_lab
from nde_lab.errors import RunConflictError, StoreError
from nde_lab.store import RunWriter, locate
from tests.cli import RECIPES, run_cli
from tests.store_race import race

OU = ("fit", "--config", str(RECIPES / "ou_fit.yaml"), "--trainer.max_epochs", "1", "--data.init_args.n_paths", "20",
      "--model.init_args.n_samples", "16")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1 with bucket `lab`; the AWS_* variables point at it."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with open(log, "w") as handle:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=handle, stderr=subprocess.STDOUT)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError(f"moto server did not start: {log.read_text()}") from None
                time.sleep(0.2)
        locate("s3://lab").fs.mkdir("lab")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _query_and_list(store: str) -> None:
    run = nde_lab.open_run(f"{store}/ou_fit/latest")
    assert run.status == "complete" and run.attrs["model_family"]
    assert run.config["model"]["class_path"].endswith("SDEFitTask")
    answer = run.expect(lambda ds: ds["y"].isel(time=-1, state=0), n=32, batch=32, seed=1, save_as="terminal_mean")
    again = nde_lab.open_run(f"{store}/ou_fit/latest")
    saved = again.group("terminal_mean")
    assert float(saved["estimate"]) == pytest.approx(float(answer["estimate"]))
    assert saved.attrs["nde_lab_provenance"]["query"] == "expect" and saved.attrs["nde_lab_provenance"]["seed"] == 1
    table = nde_lab.list_runs(store)
    assert list(table["status"]) == ["complete"] and table["path"][0].startswith(store.split("://")[0] + "://")


def test_fit_open_query_save_list_in_a_memory_store(tmp_path, monkeypatch):
    from nde_lab.cli import main

    monkeypatch.chdir(tmp_path)
    assert main([*OU, "--store", "memory://lab-runs"]) == 0
    assert not any(tmp_path.iterdir()), "nothing local is created for a memory store"
    _query_and_list("memory://lab-runs")


def test_fit_open_query_save_list_on_an_s3_server(s3, tmp_path):
    result = run_cli(*OU, store="s3://lab/runs", cwd=tmp_path)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(tmp_path.iterdir())
    _query_and_list("s3://lab/runs")
    files = locate("s3://lab/runs").files()
    assert any(k.endswith("checkpoints/last.ckpt") for k in files) and not any(".partial" in k for k in files)
    run = nde_lab.open_run("s3://lab/runs/ou_fit/latest")
    assert np.isfinite(run.sample(4, seed=0)["y"].values).all()  # the model restores from the bucket
    with pytest.raises(StoreError, match="not reachable"):  # the CLI turns this StoreError into exit 2
        RunWriter("s3://no-such-bucket/runs", "ou_fit")


def test_four_writers_on_one_name_on_an_s3_server_one_wins(s3):
    """The lock is created by a conditional PUT (If-None-Match: *): one writer per name."""
    store = "s3://lab/race"
    outs = race(store, ["same"] * 4 + ["d1", "d2"])
    same = outs[:4]
    assert sum("WON" in o for o in same) == 1, outs
    assert all("CONFLICT" in o and "s3://lab/race/exp/same" in o for o in same if "WON" not in o), outs
    assert all("WON" in o for o in outs[4:]), outs
    table = nde_lab.list_runs(store)
    assert sorted(table["run_id"]) == ["d1", "d2", "same"] and set(table["status"]) == {"complete"}, table
    assert not any(".partial" in k for k in locate(store).files())
    with pytest.raises(RunConflictError, match="already exists"):  # a late writer of a published name
        RunWriter(store, "exp", "same")
    claim = locate(store) / "exp" / ".claimed.partial" / "lock.json"
    claim.create_json({"token": "a"})  # the primitive: a conditional PUT, If-None-Match: *
    with pytest.raises(FileExistsError):
        claim.create_json({"token": "b"})
    assert claim.read_json() == {"token": "a"}


@pytest.mark.parametrize("store", ["foo://x", "s3:bucket", "gs://bucket", "memory://"])
def test_unknown_or_malformed_store_urls_are_refused(store):
    with pytest.raises(StoreError, match="scheme|URL|names no"):
        locate(store)


def test_cli_exits_2_for_an_unknown_scheme_and_creates_nothing(tmp_path):
    result = run_cli("fit", "--config", str(RECIPES / "ou_fit.yaml"), store="foo://x", cwd=tmp_path)  # type: ignore[arg-type]
    assert result.returncode == 2 and "unsupported scheme 'foo'" in result.stderr
    assert not any(tmp_path.iterdir())
    assert str(locate("file:///tmp/abc").local_path) == "/tmp/abc"
    assert locate(Path("rel")).local_path == Path.cwd() / "rel"
