"""The run store: locations (local, file://, memory://, s3://), committing runs atomically, checking
and listing them, adding groups, garbage collection. Models and queries live above it (`nde_lab.run`)."""

from nde_lab.store.catalog import gc, latest, list_runs, run_state
from nde_lab.store.layout import new_run_id, validate_name
from nde_lab.store.location import Location, locate, resolve_store
from nde_lab.store.reader import StoredRun, open_stored
from nde_lab.store.writer import RunWriter, write_tree

__all__ = [
    "Location",
    "RunWriter",
    "StoredRun",
    "gc",
    "latest",
    "list_runs",
    "locate",
    "new_run_id",
    "open_stored",
    "resolve_store",
    "run_state",
    "validate_name",
    "write_tree",
]
