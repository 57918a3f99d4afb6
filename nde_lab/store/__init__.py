"""The run store: layout, writing runs atomically, opening and listing them."""

from nde_lab.store.layout import new_run_id, resolve_store, validate_name
from nde_lab.store.reader import Run, list_runs, open_run
from nde_lab.store.writer import RunWriter, write_tree

__all__ = ["Run", "RunWriter", "list_runs", "new_run_id", "open_run", "resolve_store", "validate_name", "write_tree"]
