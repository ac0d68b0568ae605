"""The bookkeeping around a run that is not the merge itself: a repeated idempotency key
returns the first run's outcome (never a second effect), and runs whose work was rolled
back (failed, dry run) are still recorded in the import history.

The transaction and its steps are ferry.merge.run; this module only reads and writes the
`imports` rows through ferry.merge.store.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection, Engine

from ferry.errors import AlreadyExists
from ferry.merge import announce, store
from ferry.merge.model import ImportOutcome


def earlier_run(conn: Connection, key: str, source_sha256: str) -> ImportOutcome | None:
    """The first outcome recorded under `key`, or None when the key is unused.

    The same key with another payload is AlreadyExists naming the first import: a key
    names one payload, so a retry can never apply something else under it.
    """
    earlier = store.by_key(conn, key)
    if earlier is None:
        return None
    if earlier.source_sha256 != source_sha256:
        raise AlreadyExists(
            f"idempotency key {earlier.options.idempotency_key!r} was used by import "
            f"{earlier.id} for a different payload",
            field="idempotency_key",
        )
    return earlier


def record_rolled_back(engine: Engine, outcome: ImportOutcome) -> None:
    """Record a run whose work was rolled back (failed or dry run); it claims no key. Its
    announcement, if one was asked for, commits with the record (ferry.merge.announce)."""
    with engine.begin() as conn:
        store.insert(conn, outcome, claim_key=False)
        announce.recorded(conn, outcome)
