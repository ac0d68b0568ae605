"""The import-announcement hook: what an import announces is written with its record.

A caller that wants a run announced (ImportSession with `notify`) wraps the run in
`announcing(write)`. `write(conn, outcome)` is then called in the transaction that records
the run, right before it commits: the import's own transaction for a committed run, the
transaction writing the record of a failed or dry run. So the announcement (an outbox row,
ferry.notify.import_announcement) exists exactly when the record does: a process
killed after the commit, or a notify service that is down, cannot lose it, and a run that
rolls back announces nothing it did not do.

`write` runs inside a SAVEPOINT: if it fails, the announcement is rolled back and logged,
never the import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy.engine import Connection

from ferry.merge.model import ImportOutcome

log = logging.getLogger("ferry.merge")
Write = Callable[[Connection, ImportOutcome], None]
_current: ContextVar[Write | None] = ContextVar("ferry_merge_announce", default=None)


@contextmanager
def announcing(write: Write) -> Iterator[None]:
    """Runs imported in this block (this thread) are announced by `write`."""
    token = _current.set(write)
    try:
        yield
    finally:
        _current.reset(token)


def recorded(conn: Connection, outcome: ImportOutcome) -> None:
    """Called where a run's record is about to commit, in that transaction."""
    write = _current.get()
    if write is None:
        return
    try:
        with conn.begin_nested():
            write(conn, outcome)
    except Exception:
        log.exception(
            "import %s: its announcement could not be queued",
            outcome.id,
            extra={"event": "import_announce_failed", "import_id": outcome.id},
        )
