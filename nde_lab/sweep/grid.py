"""Sweep grids: parse `KEY=V1,V2` options, name dimensions, expand points and derive per-seed values.

A grid is an ordered mapping dotted recipe key -> list of values (strings as typed on the command line,
parsed as YAML by jsonargparse when the point runs). `--seeds N` adds a `seed` dimension: for seed index
s every seed the recipe uses (`seed_everything` and each `...seed` init arg) is set to its recipe value
plus s, so one index moves the global seed and the data seeds together.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from nde_lab.errors import RecipeError

__all__ = ["Grid", "Point", "dim_names", "parse_grid_option", "parse_value", "split_values"]

SEED_DIM = "seed"


def split_values(text: str) -> list[str]:
    """Split `V1,V2,...` at top-level commas (commas inside [], {} or quotes stay in their value)."""
    out, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


def parse_grid_option(option: str) -> tuple[str, list[str]]:
    """`model.init_args.lr=0.01,0.1` -> ("model.init_args.lr", ["0.01", "0.1"]); RecipeError if malformed."""
    key, sep, values = option.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key:
        raise RecipeError(f"--grid {option!r}: expected KEY=V1,V2,... (a dotted recipe key, '=', comma-separated values).")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise RecipeError(f"--grid {option!r}: {key!r} is not a dotted recipe key (e.g. model.init_args.lr).")
    vals = split_values(values)
    if not values.strip() or any(v == "" for v in vals):
        raise RecipeError(f"--grid {option!r}: empty value list for {key}; give KEY=V1,V2,...")
    if len(set(vals)) != len(vals):
        raise RecipeError(f"--grid {option!r}: repeated values {vals} for {key}.")
    return key, vals


def parse_value(text: str) -> Any:
    """A grid value as a coordinate: YAML scalar (int, float, bool, str); anything else stays text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, str, bool)) and value is not None else text


def dim_names(keys: list[str]) -> dict[str, str]:
    """Dimension name per key: its last component, or the whole key with '.' -> '_' where last
    components collide (or would be `seed`)."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    names = {}
    for key, name in zip(keys, last, strict=True):
        clash = last.count(name) > 1 or name == SEED_DIM
        names[key] = key.replace(".", "_") if clash else name
    return names


@dataclass(frozen=True)
class Point:
    """One sweep point: its grid index per key, its seed index, and the `fit` overrides that make it."""

    index: tuple[int, ...]
    seed: int
    overrides: tuple[tuple[str, str], ...]
    run_name: str


@dataclass
class Grid:
    """The swept keys and values, the number of seeds and the recipe seed keys they move.

    Attributes:
        values: dotted key -> values (strings, as given).
        seeds: number of seed indices (>= 1); 1 with `seed_keys` empty means no seed sweep.
        seed_keys: dotted key -> recipe value (int or None) of every seed the recipe uses.
    """

    values: dict[str, list[str]]
    seeds: int = 1
    seed_keys: dict[str, int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.values and self.seeds < 2:
            raise RecipeError("empty sweep: give at least one --grid KEY=V1,V2,... or --seeds N with N >= 2.")
        if self.seeds < 1:
            raise RecipeError(f"--seeds must be >= 1, got {self.seeds}.")
        for key in self.values:
            self.seed_keys.pop(key, None)  # a swept seed key is the user's; --seeds moves the others

    @property
    def keys(self) -> list[str]:
        return list(self.values)

    @property
    def dims(self) -> dict[str, str]:
        return dim_names(self.keys)

    @property
    def shape(self) -> tuple[int, ...]:
        return (*(len(v) for v in self.values.values()), self.seeds)

    def coords(self) -> dict[str, list[Any]]:
        """Coordinate values per dim (grid values parsed as YAML scalars; text when types are mixed)."""
        out: dict[str, list[Any]] = {}
        for key, dim in self.dims.items():
            vals = [parse_value(v) for v in self.values[key]]
            kinds = {type(v) for v in vals}
            if kinds <= {int, float} and kinds != {bool}:
                out[dim] = [float(v) for v in vals] if float in kinds else vals
            elif len(kinds) == 1:
                out[dim] = vals
            else:
                out[dim] = list(self.values[key])
        out[SEED_DIM] = list(range(self.seeds))
        return out

    def seed_overrides(self, s: int) -> list[tuple[str, str]]:
        """The seed values of seed index `s`: recipe value + s for every seed key (None/true -> s)."""
        if self.seeds == 1:
            return []
        out = []
        for key, base in self.seed_keys.items():
            start = base if isinstance(base, int) and not isinstance(base, bool) else 0
            out.append((key, str(start + s)))
        return out

    def identity(self, recipe_text: str) -> str:
        """A short hash of recipe text, grid and seeds: the same sweep command gets the same name."""
        blob = json.dumps({"recipe": recipe_text, "grid": self.values, "seeds": self.seeds}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    def points(self, sweep_name: str) -> list[Point]:
        """Every point, grid-major then seed, with deterministic run names `<sweep>-g<i>-s<seed>`."""
        out = []
        ranges = [range(len(v)) for v in self.values.values()]
        for flat, index in enumerate(itertools.product(*ranges)):
            for s in range(self.seeds):
                overrides = [(k, self.values[k][i]) for k, i in zip(self.keys, index, strict=True)]
                overrides += self.seed_overrides(s)
                out.append(Point(tuple(index), s, tuple(overrides), f"{sweep_name}-g{flat:03d}-s{s:03d}"))
        return out


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {dotted key: leaf value}."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def find_seed_keys(config: dict[str, Any]) -> dict[str, int | None]:
    """Every seed a resolved recipe uses: `seed_everything` and each key whose last component is `seed`."""
    flat = flatten(config)
    keys = {"seed_everything": flat.get("seed_everything")} if "seed_everything" in flat else {}
    for key, value in flat.items():
        if key.rsplit(".", 1)[-1] == "seed" and (value is None or isinstance(value, int)):
            keys[key] = value
    return keys
