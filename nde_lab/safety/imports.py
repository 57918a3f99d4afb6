"""The import allow-list: nothing a recipe, a checkpoint or a stored run names is imported unless allowed.

jsonargparse resolves every `class_path`, callable and type given as a *value* through
`import_object`, which consults its import-path policy *before* importing anything
(`jsonargparse.set_parsing_settings(import_path_denylist=["*"], import_path_allowlist=[...])`).
The lab denies everything (`*`) and allows `nde_lab`, `torch`, `lightning` and `pyro`, plus the
prefixes the user names explicitly:

- `--allow_import PREFIX` on the command line (repeatable),
- `allow_import: [PREFIX, ...]` at the top of a recipe the user runs,
- the environment variable `NDE_LAB_ALLOW_IMPORT` (comma- or colon-separated prefixes).

A stored run's `config.yaml` and a checkpoint's hyper-parameters are parsed under the same policy;
an `allow_import` key inside them is ignored (a shared file cannot allow itself).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from nde_lab.errors import NdeLabError

__all__ = [
    "ALLOW_ENV",
    "DEFAULT_ALLOWED",
    "ImportNotAllowedError",
    "active_prefixes",
    "allow_imports",
    "allowed_prefixes",
    "enforce_import_policy",
    "explain_denied_import",
    "import_policy",
    "prescan_allow_imports",
]

#: Import prefixes a value may always name.
DEFAULT_ALLOWED: tuple[str, ...] = ("nde_lab", "torch", "lightning", "pyro")
#: Environment variable with extra allowed prefixes (comma- or colon-separated).
ALLOW_ENV = "NDE_LAB_ALLOW_IMPORT"
#: The recipe key and command-line flag (`--allow_import`) naming extra allowed prefixes.
ALLOW_KEY = "allow_import"

_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_DENIED = re.compile(r"Importing '([^']+)' is not allowed")

HOW_TO_ALLOW = (
    "to allow it, pass --allow_import {prefix}, add `allow_import: [{prefix}]` to the recipe you run, "
    f"or set {ALLOW_ENV}={{prefix}}"
)


class ImportNotAllowedError(NdeLabError, ValueError):
    """A recipe, checkpoint or stored run names an import path outside the allow-list."""


def _split(value: str | Iterable[str] | None) -> list[str]:
    if value is None:
        return []
    items = re.split(r"[,:\s]+", value) if isinstance(value, str) else [str(v) for v in value]
    return [item.strip() for item in items if item and item.strip()]


_ALLOWED_HERE: ContextVar[tuple[str, ...]] = ContextVar("nde_lab_allowed_imports", default=())


@contextmanager
def allow_imports(*prefixes: str) -> Iterator[None]:
    """Allow `prefixes` for code in the block, e.g. `with allow_imports("my_fields"): run.model`."""
    token = _ALLOWED_HERE.set((*_ALLOWED_HERE.get(), *allowed_prefixes(prefixes)[len(DEFAULT_ALLOWED):]))
    try:
        yield
    finally:
        _ALLOWED_HERE.reset(token)


def allowed_prefixes(extra: str | Iterable[str] | None = None) -> list[str]:
    """The allow-list: the defaults, $NDE_LAB_ALLOW_IMPORT, prefixes of an enclosing `allow_imports`,
    then `extra` (validated dotted names)."""
    prefixes = [*DEFAULT_ALLOWED, *_split(os.environ.get(ALLOW_ENV)), *_ALLOWED_HERE.get(), *_split(extra)]
    for prefix in prefixes:
        if not _PREFIX.match(prefix) or prefix == "jsonargparse" or prefix.startswith("jsonargparse."):
            raise ImportNotAllowedError(
                f"allow_import entry {prefix!r} is not a dotted module prefix (like 'my_models' or 'lab.fields')."
            )
    return list(dict.fromkeys(prefixes))


def _settings() -> dict[str, Any]:
    from jsonargparse import _common

    return _common.parsing_settings


def enforce_import_policy(extra: str | Iterable[str] | None = None) -> list[str]:
    """Make jsonargparse deny every import path a value names except the allow-list; returns the list."""
    from jsonargparse import set_parsing_settings

    prefixes = allowed_prefixes(extra)
    settings = _settings()
    verdicts = {k: v for k, v in settings["import_path_verdicts"].items() if not v}  # drop earlier allowances
    settings["import_path_verdicts"] = verdicts
    set_parsing_settings(import_path_denylist=["*"], import_path_allowlist=prefixes)
    return prefixes


@contextmanager
def import_policy(extra: str | Iterable[str] | None = None) -> Iterator[list[str]]:
    """Enforce the allow-list for the duration of the block, then restore jsonargparse's settings."""
    settings = _settings()
    saved = {k: settings[k] for k in ("import_path_verdicts", "import_paths_enforced")}
    try:
        yield enforce_import_policy(extra)
    finally:
        settings.update(saved)


def explain_denied_import(message: str, prefixes: Iterable[str] | None = None) -> str | None:
    """The lab's message for a jsonargparse import denial found in `message`, else None."""
    found = _DENIED.search(message)
    if not found:
        return None
    path = found.group(1)
    allowed = ", ".join(prefixes or allowed_prefixes())
    top = path.split(".")[0]
    return (f"class path {path!r} is outside the import allow-list ({allowed}); nothing was imported; "
            + HOW_TO_ALLOW.format(prefix=top) + ".")


def active_prefixes() -> list[str]:
    """`allowed_prefixes()` plus the prefixes jsonargparse enforces right now (the CLI's --allow_import and
    the recipe's allow_import, set by `enforce_import_policy`)."""
    prefixes = allowed_prefixes()
    settings = _settings()
    if settings.get("import_paths_enforced"):
        prefixes += [k for k, v in settings["import_path_verdicts"].items() if v and k not in prefixes]
    return prefixes


def check_import_path(path: str, prefixes: Iterable[str] | None = None) -> None:
    """Raise `ImportNotAllowedError` if `path` is not under an allowed prefix (checked before importing);
    default: the active allow-list (`active_prefixes`)."""
    allowed = list(prefixes or active_prefixes())
    if not any(path == p or path.startswith(p + ".") for p in allowed):
        raise ImportNotAllowedError(explain_denied_import(f"Importing '{path}' is not allowed", allowed))


def prescan_allow_imports(argv: list[str]) -> list[str]:
    """Prefixes the user allows on this command line: `--allow_import X` / `--allow_import=X` and the
    `allow_import` key of every `--config FILE` (read with `yaml.safe_load`, nothing imported)."""
    import yaml

    found: list[str] = []
    for i, arg in enumerate(argv):
        flag, _, inline = arg.partition("=")
        value = inline if inline else (argv[i + 1] if i + 1 < len(argv) else None)
        if flag == f"--{ALLOW_KEY}" and value is not None:
            found += _split(yaml.safe_load(value) if value.startswith("[") else value)
        elif flag in ("--config", "-c") and value is not None and Path(value).is_file():
            try:
                recipe = yaml.safe_load(Path(value).read_text())
            except (OSError, yaml.YAMLError):
                continue  # the parser reports unreadable recipes itself
            if isinstance(recipe, dict):
                found += _split(recipe.get(ALLOW_KEY))
    return found
