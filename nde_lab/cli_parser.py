"""The lab's argument parser: no prefix abbreviations, and configuration errors in a few lines.

jsonargparse reports a bad nested value as a cascade (`Parser key "model": ... Parser key "dt": ...`)
after a full usage dump. `LabArgumentParser.error` prints one `nde-lab: error:` line naming the
dotted key and the value, the innermost reason, and where to look for the accepted options; a denied
import names the class path and how to allow it.
"""

from __future__ import annotations

import re
import sys
from typing import Any, NoReturn

from lightning.pytorch.cli import LightningArgumentParser

from nde_lab.safety.imports import explain_denied_import

__all__ = ["LabArgumentParser", "short_error"]

_KEY = re.compile(r'Parser key "([^"]+)"')


_CLASS = re.compile(r"Problem with given class_path '([^']+)'")
_SUBTYPES = re.compile(r"Subtypes: \[(.*)\]")
_TYPE = re.compile(r"<class '([\w.]+)'>")


def _dotted_path(lines: list[str]) -> tuple[list[str], int]:
    """The dotted key of the innermost `Parser key` line (adding `init_args` under subclass specs) and its index."""
    stack: list[tuple[int, str]] = []
    subtypes: dict[int, list[str]] = {}
    best: tuple[list[str], int] = ([], -1)
    depth_best = -1
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        text = line.strip().lstrip("- ")
        key, cls, sub = _KEY.match(text), _CLASS.match(text), _SUBTYPES.match(text)
        if key or cls:
            while stack and stack[-1][0] >= indent:
                stack.pop()
        if key:
            stack.append((indent, key.group(1)))
            if indent > depth_best:
                depth_best, best = indent, ([seg for _, seg in stack], i)
        elif sub:
            subtypes[len(stack)] = [t.rsplit(".", 1)[-1] for t in _TYPE.findall(sub.group(1))]
        elif cls and cls.group(1).rsplit(".", 1)[-1] not in subtypes.get(len(stack), []):
            stack.append((indent, "init_args"))
    return best


def short_error(message: str) -> str:
    """One line from a jsonargparse error: the full dotted key, the value given, and the innermost reason."""
    denied = explain_denied_import(message)
    if denied:
        return denied
    lines = [ln for ln in message.splitlines() if ln.strip()]
    path, index = _dotted_path(lines)
    if index < 0:
        return re.sub(r"\s+", " ", message.strip())[:600]
    value, reasons = None, []
    key_indent = len(lines[index]) - len(lines[index].lstrip())
    for line in lines[index + 1:]:
        if len(line) - len(line.lstrip()) <= key_indent:
            break
        text = line.strip().lstrip("- ")
        got = re.search(r"Got value: (.*)$", text)
        if got and value is None:
            value, text = got.group(1).strip(), text[: got.start()].rstrip(" .")
        if text.startswith("Given value:"):
            value = text.removeprefix("Given value:").strip()
            break
        if text.startswith(("Given value type", "Subtypes", "Errors:", "Does not validate")):
            continue
        reasons.append(_TYPE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text))
    unknown = [r for r in reasons if "is not accepted" in r or "No action for key" in r]
    reason = "; ".join(dict.fromkeys(unknown or [r for r in reasons if not r.startswith("Problem with given")]))
    reason = reason or "invalid value"
    shown = f" = {value!r}" if value is not None and len(value) <= 80 and not unknown else ""
    return f"recipe key {'.'.join(path)!r}{shown}: {reason}"[:600]


class LabArgumentParser(LightningArgumentParser):
    """LightningArgumentParser with `allow_abbrev=False` and short configuration errors (exit 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("prog", "nde-lab")
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        sys.stderr.write(f"nde-lab: error: {short_error(message)}\n")
        sys.stderr.write(f"(accepted options: {self.prog.replace(' [options]', '')} --help)\n")
        self.exit(2)
