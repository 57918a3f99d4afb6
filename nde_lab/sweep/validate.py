"""Validate a sweep before anything runs: the recipe and every swept key and value, through the fit
command's own parser (LightningCLI / jsonargparse), without instantiating anything."""

from __future__ import annotations

import contextlib
import difflib
import io
import logging
from typing import Any

from nde_lab.errors import RecipeError
from nde_lab.sweep.grid import Grid, find_seed_keys, flatten

__all__ = ["parse_recipe", "validate_grid"]


class _Parsed(Exception):
    """Raised by the parse-only CLI once the config is parsed and validated."""


def _parse(argv: list[str]) -> dict[str, Any]:
    """Parse `fit <argv>` with the lab's parser; return the resolved fit config as a nested dict."""
    from nde_lab.cli import LabCLI

    class _ParseOnlyCLI(LabCLI):
        def before_instantiate_classes(self) -> None:
            raise _Parsed(self.config["fit"].as_dict())

    err = io.StringIO()
    seed_log = logging.getLogger("lightning.fabric.utilities.seed")
    level = seed_log.level
    seed_log.setLevel(logging.WARNING)  # "Seed set to 0" for a parse that runs nothing
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            _ParseOnlyCLI(args=["fit", *argv])
    except _Parsed as parsed:
        return parsed.args[0]
    except SystemExit:
        text = err.getvalue()
        message = text.split("error:", 1)[-1] if "error:" in text else text or "invalid arguments"
        message = " ".join(ln.strip() for ln in message.splitlines() if ln.strip())
        raise RecipeError(message[:600]) from None
    finally:
        LabCLI.active = None
        seed_log.setLevel(level)
    raise RecipeError("the recipe did not parse")  # pragma: no cover (parse-only CLI always raises)


def parse_recipe(recipe: str, extra: list[str] | None = None) -> dict[str, Any]:
    """The resolved fit config of `recipe` (+ `extra` fit arguments); RecipeError naming the problem."""
    try:
        return _parse(["--config", str(recipe), *(extra or [])])
    except RecipeError as err:
        raise RecipeError(f"recipe {recipe}: {err}") from None


def _known(key: str, flat: dict[str, Any]) -> bool:
    if key in flat or any(k.startswith(key + ".") for k in flat):
        return True
    # jsonargparse also accepts keys without `init_args` (model.lr for model.init_args.lr)
    bare = {k.replace(".init_args.", ".") for k in flat}
    return key in bare or any(k.startswith(key + ".") for k in bare)


def validate_grid(recipe: str, values: dict[str, list[str]], seeds: int, extra: list[str] | None = None) -> Grid:
    """Check every grid key exists in the recipe and every value parses; find the recipe's seed keys.

    One parse of the recipe, then one parse per distinct (key, value) with the other keys at their
    first value (values are independent arguments, so this covers every point's arguments).

    Raises:
        RecipeError: unknown key (named, with close matches), a value the parser rejects, empty grid.
    """
    base = parse_recipe(recipe, extra)
    flat = flatten(base)
    for key in values:
        if not _known(key, flat):
            close = difflib.get_close_matches(key, list(flat), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise RecipeError(f"unknown grid key {key!r}: recipe {recipe} has no such key{hint}")
    grid = Grid(dict(values), seeds, find_seed_keys(base))
    first = [(k, v[0]) for k, v in values.items()]
    seen: set[tuple[str, str]] = set()
    for key, vals in values.items():
        for value in vals:
            if (key, value) in seen:
                continue
            seen.add((key, value))
            args = [a for k, v in first if k != key for a in (f"--{k}", v)] + [f"--{key}", value]
            try:
                _parse(["--config", str(recipe), *(extra or []), *args])
            except RecipeError as err:
                raise RecipeError(f"grid value {key}={value!r} is invalid: {err}") from None
    if grid.seeds > 1 and not grid.seed_keys:
        raise RecipeError(f"--seeds {seeds}: recipe {recipe} uses no seed (no seed_everything, no `seed` argument).")
    return grid
