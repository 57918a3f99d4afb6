"""Checkpoints: one loader, local files only, weights only; damaged or missing files exit 2 naming the file.

A checkpoint with a `__reduce__` payload (it writes a sentinel when unpickled) is offered over HTTP
on 127.0.0.1 and as a local file: both are refused and the sentinel stays absent.
"""

from __future__ import annotations

import http.server
import pathlib
import threading

import pytest
import torch
from cli import RECIPES, runs_in

from nde_lab.checkpoints import CheckpointError, load_checkpoint
from nde_lab.cli import main
from nde_lab.safety import import_policy

SPIRAL = RECIPES / "spiral_node.yaml"


class _Payload:
    """Unpickling this runs `Path(sentinel).write_text('pwned')`."""

    def __init__(self, sentinel: str) -> None:
        self.sentinel = sentinel

    def __reduce__(self):
        return (pathlib.Path(self.sentinel).write_text, ("pwned",))


def _malicious(tmp_path) -> tuple[pathlib.Path, pathlib.Path]:
    sentinel = tmp_path / "payload-ran"
    path = tmp_path / "served" / "last.ckpt"
    path.parent.mkdir()
    payload = _Payload.__new__(_Payload)
    payload.sentinel = str(sentinel)
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": payload}, path)
    return path, sentinel


def _main(*argv: str) -> int:
    with import_policy():
        return main(list(argv))


@pytest.fixture
def server(tmp_path):
    """http.server on 127.0.0.1 serving tmp_path/served, recording the paths requested."""
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path / "served"), **kwargs)

        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requested
    httpd.shutdown()
    httpd.server_close()


def test_a_malicious_checkpoint_over_http_is_refused_and_never_fetched(tmp_path, server, capsys):
    _, sentinel = _malicious(tmp_path)
    url, requested = server
    code = _main("fit", "--config", str(SPIRAL), "--ckpt_path", f"{url}/last.ckpt", "--store", str(tmp_path / "s"))
    err = capsys.readouterr().err
    assert code == 2 and "is a URL" in err and f"{url}/last.ckpt" in err, err[-2000:]
    assert not sentinel.exists() and requested == []
    assert runs_in(tmp_path / "s") == []
    with pytest.raises(CheckpointError, match="URL"):
        load_checkpoint(f"{url}/last.ckpt")


def test_a_malicious_local_checkpoint_is_refused_without_running_its_payload(tmp_path, capsys):
    checkpoint, sentinel = _malicious(tmp_path)
    for subcommand in ("fit", "predict"):
        code = _main(subcommand, "--config", str(SPIRAL), "--ckpt_path", str(checkpoint), "--store", str(tmp_path / "s"))
        err = capsys.readouterr().err
        assert code == 2 and str(checkpoint.resolve()) in err and "not plain weights" in err, err[-2000:]
    assert not sentinel.exists()
    assert runs_in(tmp_path / "s") == []


@pytest.mark.parametrize("damage", ["truncated", "empty", "missing", "directory", "not_a_checkpoint"])
def test_damaged_or_missing_checkpoints_exit_2_naming_the_file_before_a_run_exists(tmp_path, capsys, damage):
    path = tmp_path / "last.ckpt"
    if damage != "missing":
        torch.save({"state_dict": {"w": torch.randn(64, 64)}, "epoch": 3}, path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "directory":
        path.unlink()
        path.mkdir()
    elif damage == "not_a_checkpoint":
        torch.save({"weights": torch.zeros(2)}, path)
    code = _main("fit", "--config", str(SPIRAL), "--ckpt_path", str(path), "--store", str(tmp_path / "s"))
    err = capsys.readouterr().err
    assert code == 2, err[-2000:]
    assert str(path) in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2
    assert runs_in(tmp_path / "s") == []


def test_ckpt_path_last_with_nothing_to_resume_exits_2(tmp_path, capsys):
    assert _main("fit", "--config", str(SPIRAL), "--ckpt_path", "last", "--store", str(tmp_path / "s")) == 2
    assert "no earlier checkpoint to resume" in capsys.readouterr().err
    assert runs_in(tmp_path / "s") == []


@pytest.mark.parametrize("subcommand", ["predict", "validate", "test"])
def test_evaluating_without_a_checkpoint_exits_2(tmp_path, capsys, subcommand):
    assert _main(subcommand, "--config", str(SPIRAL), "--store", str(tmp_path / "s")) == 2
    err = capsys.readouterr().err
    assert "needs a trained model" in err and "--from_run" in err and "--allow_untrained" in err
    assert runs_in(tmp_path / "s") == []
