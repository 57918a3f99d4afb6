"""`nde-lab gc [--store STORE] [--dry-run]`: remove dead leftovers of interrupted runs and saves."""

from __future__ import annotations

import argparse
import sys

from nde_lab.errors import StoreError

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Remove (or with --dry-run, list) what `nde_lab.gc` finds; exit 2 for a bad store."""
    parser = argparse.ArgumentParser(prog="nde-lab gc", description=__doc__)
    parser.add_argument("--store", default=None, help="store root or URL (default: $NDE_LAB_STORE or ./store)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    args = parser.parse_args(argv)
    from nde_lab.store.catalog import gc

    try:
        removed = gc(args.store, dry_run=args.dry_run)
    except StoreError as err:
        print(f"nde-lab: error: {err}", file=sys.stderr)
        return 2
    verb = "would remove" if args.dry_run else "removed"
    for item in removed:
        print(f"{verb} {item['path']}: {item['reason']}")
    print(f"nde-lab gc: {verb} {len(removed)} leftover(s).", file=sys.stderr)
    return 0
