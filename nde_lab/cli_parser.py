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


def short_error(message: str) -> str:
    """The dotted key path and the innermost reason of a jsonargparse error message (a few lines)."""
    denied = explain_denied_import(message)
    if denied:
        return denied
    keys = _KEY.findall(message)
    dotted = ".".join(k for k in keys if k)
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    inner = [ln for ln in lines if not _KEY.fullmatch(ln.rstrip(":")) and not ln.startswith("Parser key")]
    # the innermost reason is the last informative line; keep at most a few
    reason = " ".join(inner[-2:]) if inner else lines[-1] if lines else message
    reason = re.sub(r"\s+", " ", reason)
    if len(reason) > 400:
        reason = reason[:400] + " ..."
    if not dotted or dotted in reason:
        return reason
    # nested keys are relative to their parent: make the full dotted path
    return f"key {dotted!r}: {reason}"


class LabArgumentParser(LightningArgumentParser):
    """LightningArgumentParser with `allow_abbrev=False` and short configuration errors (exit 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        sys.stderr.write(f"nde-lab: error: {short_error(message)}\n")
        sys.stderr.write(f"(accepted options: {self.prog.replace(' [options]', '')} --help)\n")
        self.exit(2)
