"""README, followed literally: every ```bash and ```python block runs, in order, in a fresh directory.

The only changes to what a user types: the install and `tox` commands are left out (they are the "two
commands" this test stands in for), and each `nde-lab fit` or `nde-lab sweep` gets small-budget
overrides appended (`ux_runs.TINY_FITS`, keyed by the recipe's name, from `--config` or `--from_run`);
the command itself is unchanged.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time

from cli import REPO
from ux_runs import TINY_FITS

_BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)
_SKIP = ("python3 -m pip install", "pip install", "tox")


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every ```bash and ```python block, in order."""
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(text)]


def _experiment(words: list[str]) -> str | None:
    """The recipe a command trains: `--config recipes/X.yaml` or `--from_run STORE/X/RUN` gives X."""
    if "--config" in words:
        return os.path.splitext(os.path.basename(words[words.index("--config") + 1]))[0]
    if "--from_run" in words:
        return words[words.index("--from_run") + 1].rstrip("/").split("/")[-2]
    return None


def _with_budget(command: str) -> str:
    """`nde-lab fit|sweep ...` with its recipe's small-budget overrides appended (a sweep passes them to
    every point's fit; appended last, they win over the command's own budget)."""
    words = shlex.split(command)
    recipe = _experiment(words)
    if words[:1] != ["nde-lab"] or words[1:2] not in (["fit"], ["sweep"]) or recipe is None:
        return command
    budget = TINY_FITS.get(recipe, ("--trainer.max_epochs", "1"))  # recipes other sections add: one epoch
    return command + " " + " ".join(shlex.quote(a) for a in budget)


def shell_script(block: str) -> str:
    """The block as a bash script: install/tox commands dropped, budgets appended to fits."""
    lines = []
    for line in block.splitlines():
        code, hash_, comment = line.partition("  #")
        kept = [_with_budget(seg.strip()) for seg in code.split("&&") if seg.strip() and not seg.strip().startswith(_SKIP)]
        if kept:
            lines.append(" && ".join(kept) + (f"  #{comment}" if hash_ else ""))
    return "\n".join(lines)


def test_readme_extraction_keeps_what_the_user_types():
    script = shell_script("python3 -m pip install -c c.txt -e . && nde-lab fit --config recipes/ou_fit.yaml  # hi\n"
                          "python3 -m pip install -q tox && tox\nnde-lab runs\n"
                          "nde-lab fit --from_run store/ou_fit/latest --trainer.max_epochs 50\n"
                          "nde-lab sweep --config recipes/ou_fit.yaml --seeds 5\n")
    tiny = " ".join(TINY_FITS["ou_fit"])
    assert script == (f"nde-lab fit --config recipes/ou_fit.yaml {tiny}  # hi\nnde-lab runs\n"
                      f"nde-lab fit --from_run store/ou_fit/latest --trainer.max_epochs 50 {tiny}\n"
                      f"nde-lab sweep --config recipes/ou_fit.yaml --seeds 5 {tiny}")


def test_readme_runs_top_to_bottom(tmp_path):
    blocks = readme_blocks((REPO / "README.md").read_text())
    assert sum(lang == "python" for lang, _ in blocks) >= 1 and sum(lang == "bash" for lang, _ in blocks) >= 3
    shutil.copytree(REPO / "recipes", tmp_path / "recipes")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("NDE_LAB_STORE", None)
    for k, (lang, code) in enumerate(blocks):
        if lang == "bash":
            script = shell_script(code)
            if not script:
                continue
            # servers a block starts in the background (`dask scheduler &`) stop with the block
            argv = ["bash", "-e", "-o", "pipefail", "-c", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script]
        else:
            argv = [sys.executable, "-c", code]
        start = time.perf_counter()
        out = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        print(f"README block {k} ({lang}, {code.strip().splitlines()[0][:60]!r}): {time.perf_counter() - start:.0f} s")
        assert out.returncode == 0, f"README block {k} ({lang}) failed:\n{code}\n--- stderr:\n{out.stderr[-4000:]}"
    assert (tmp_path / "spiral.png").stat().st_size > 10_000 and (tmp_path / "spiral_phase.png").exists()
