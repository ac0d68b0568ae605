"""The import engine: validate, plan, apply and undo merges of bundles into a database.

Driven by the dataset spec (natural keys, references, scope); set-based SQL over staging
tables, one transaction per run. See README.md and run.py for the flow, pipeline.py for
how staging runs beside the merge, and values.py for how values are checked.
"""

from ferry.merge.model import (
    EntitySummary,
    ImportOutcome,
    MergeOptions,
    OnError,
    RecordChange,
    RecordError,
    Status,
    Strategy,
)
from ferry.merge.rejects import rejected_events
from ferry.merge.run import ArrivingSha, run_import
from ferry.merge.stagetables import field_rules
from ferry.merge.store import get_import, list_imports
from ferry.merge.undo import undo_import

__all__ = [
    "ArrivingSha",
    "EntitySummary",
    "ImportOutcome",
    "MergeOptions",
    "OnError",
    "RecordChange",
    "RecordError",
    "Status",
    "Strategy",
    "field_rules",
    "get_import",
    "list_imports",
    "rejected_events",
    "run_import",
    "undo_import",
]
