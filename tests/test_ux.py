"""What a user sees: progress under a terminal, plain lines without one, the closing summary, a fast --help."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from cli import RECIPES, REPO, run_cli

OU_TINY = ("fit", "--config", str(RECIPES / "ou_fit.yaml"), "--trainer.max_epochs", "3")


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "COLUMNS": "100", "TERM": "xterm-256color"}
    env.pop("NDE_LAB_STORE", None)
    return env


def _run_in_pty(argv: list[str], timeout: float = 300) -> tuple[int, str]:
    """Run `argv` with stdin/stdout/stderr on a pseudo-terminal; returns (exit status, everything printed)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdin=follower, stdout=follower, stderr=follower, cwd=REPO, env=_env(),
                            close_fds=True)
    os.close(follower)
    chunks, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the follower closed: the process is done
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def test_fit_under_a_terminal_shows_a_progress_bar_and_ends_with_the_summary(tmp_path):
    code, out = _run_in_pty([sys.executable, "-m", "nde_lab", *OU_TINY, "--store", str(tmp_path)])
    assert code == 0, out[-3000:]
    # Lightning's rich bar ("Epoch 2/2 ━━━━ 1/1 0:00:00 ...", ANSI sequences) or tqdm's ("Epoch 2: 100%|...", \r)
    assert ("\x1b[" in out or "\r" in out.replace("\r\n", "\n")) and re.search(r"Epoch 2\b", out), out[-2000:]
    (run_dir,) = (tmp_path / "ou_fit").iterdir()
    summary = out[out.index("nde-lab: run complete"):]
    assert str(run_dir) in summary.replace("\r\n", "\n").replace("\n", "")
    assert "train NLL" in summary and "theta" in summary and "±" in summary and "wall time" in summary
    # no Lightning banners or adverts
    for noise in ("litlogger", "Tip:", "GPU available", "TPU available", "Trainer.fit` stopped", "Seed set"):
        assert noise not in out, noise


def test_fit_without_a_terminal_prints_plain_lines_and_the_summary(tmp_path):
    out = run_cli(*OU_TINY, store=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout + out.stderr
    assert "\x1b" not in text and "\r" not in text, text[-2000:]
    assert "nde-lab: epoch 3/3 step 3" in out.stderr and "eta" in out.stderr and "train_nll=" in out.stderr
    (run_dir,) = (tmp_path / "ou_fit").iterdir()
    lines = out.stderr[out.stderr.index("nde-lab: run complete"):].splitlines()
    assert lines[0] == f"nde-lab: run complete: {run_dir}"
    assert len(lines) <= 6 and "family sde" in lines[1] and "fitted: theta" in out.stderr
    for noise in ("litlogger", "Tip:", "GPU available", "Trainer.fit` stopped", "Seed set", "LightningCLI's args"):
        assert noise not in text, noise


@pytest.mark.parametrize("argv", [["--help"], ["runs"], ["show", "nowhere/latest"]])
def test_light_commands_import_neither_lightning_nor_torch(tmp_path, argv):
    probe = ("import sys; from nde_lab.commands import main; code = main(sys.argv[1:]); "
             "heavy = sorted(m for m in ('lightning', 'torch', 'pyro', 'matplotlib') if m in sys.modules); "
             "print('HEAVY', heavy, 'CODE', code)")
    out = subprocess.run([sys.executable, "-c", probe, *argv, *(["--store", str(tmp_path)] if argv != ["--help"] else [])],
                         capture_output=True, text=True, cwd=REPO, env=_env(), timeout=120)
    assert "HEAVY [] CODE" in out.stdout, out.stdout + out.stderr
    if argv == ["--help"]:
        assert "fit" in out.stdout and "runs" in out.stdout and "plot" in out.stdout and "CODE 0" in out.stdout
    if argv[0] == "show":
        assert "CODE 2" in out.stdout and "no run 'nowhere/latest'" in out.stderr


def test_no_arguments_prints_the_usage_and_exits_2():
    from nde_lab.commands import main

    assert main([]) == 2


def test_benchmark_table_has_the_startup_ratio_rows():
    """docs/benchmarks.md (written by benchmarks/bench_startup.py) shows the light commands under 1/3 of a fit."""
    text = (REPO / "docs" / "benchmarks.md").read_text()
    section = text[text.index("## bench_startup"):]
    for command in ("nde-lab --help", "nde-lab runs --store S"):
        row = next(line for line in section.splitlines() if line.startswith(f"| {command} |"))
        assert float(row.split("|")[3]) < 1 / 3, row
