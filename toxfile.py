"""tox inline plugin: lets tox find a pyenv-installed Python for envs that pin another version.

pyenv's `python3.12` shim fails unless 3.12 is an active pyenv version, so on a machine whose active
version is 3.11 tox would report the `arviz1` env's interpreter missing although pyenv has it. Before
tox discovers interpreters, every installed pyenv CPython's `bin` directory is appended to PATH (after
the shims, so the active version still wins for `python3`). Without pyenv this does nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from tox.plugin import impl


@impl
def tox_add_core_config(core_conf, state) -> None:  # noqa: ANN001 (tox's hook signature)
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not root.is_dir():
        return
    path = os.environ.get("PATH", "").split(os.pathsep)
    extra = [str(d / "bin") for d in sorted(root.iterdir(), reverse=True)
             if d.name[:1].isdigit() and (d / "bin").is_dir() and str(d / "bin") not in path]
    os.environ["PATH"] = os.pathsep.join(path + extra)
