"""undo_import: take a committed import back, in one transaction.

Restores the rows it updated and un-deletes those it soft-deleted (both from the saved old
rows), clears late-bound links pointing at rows it created, then deletes the created rows,
children first. A row changed after the import (its updated_at is not what the import
left) makes undo refuse, naming up to 10 such records, unless forced.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.datasets.spec import Dataset, Entity
from ferry.errors import FailedPrecondition, NotFound
from ferry.merge import store
from ferry.merge.model import ImportOutcome, Status
from ferry.merge.run import begin_locked
from ferry.merge.shape import differs, key_lookup, q
from ferry.reports.versions import bump_for_import

log = logging.getLogger(__name__)
MAX_NAMED = 10
_CHANGES = "import_changes"


def undo_import(
    engine: Engine, ds: Dataset, import_id: str, *, force: bool = False, requested_by: str = ""
) -> ImportOutcome:
    """Undo import `import_id`; returns its outcome, now UNDONE.

    NotFound for an unknown id; FailedPrecondition when it is not a completed import
    (failed, dry run, already undone) or when records it touched changed since (unless
    `force`: their later changes are then lost).
    """
    clock = time.perf_counter()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        begin_locked(conn, ds.name)
        outcome = store.load(conn, import_id)
        if outcome is None:
            raise NotFound(f"import {import_id!r} does not exist", field="import_id")
        if outcome.status is not Status.COMPLETED:
            what = {
                Status.UNDONE: "was already undone",
                Status.FAILED: "failed and changed nothing",
                Status.DRY_RUN: "was a dry run and changed nothing",
            }[outcome.status]
            raise FailedPrecondition(f"import {import_id} {what}", field="import_id")
        if not force:
            total, named = _changed_since(conn, ds, import_id, sqlite)
            if total:
                raise FailedPrecondition(
                    f"{total} record(s) changed after import {import_id}: {', '.join(named)}"
                    f"{', ...' if total > len(named) else ''}; undo with force to discard "
                    "those later changes",
                    field="import_id",
                )
        bump_for_import(conn, import_id)  # before created rows go: they name the students
        entities = ds.in_order()
        params = {"iid": import_id}
        for e in entities:
            _clear_links_to_created(conn, ds, e, params)
        for e in entities:
            _restore(conn, e, params, sqlite)
        for e in reversed(entities):
            _delete_created(conn, e, import_id)
        outcome.status = Status.UNDONE
        outcome.undone_at = dt.datetime.now(dt.UTC)
        store.update(conn, outcome, claim_key=bool(outcome.options.idempotency_key))
        conn.commit()
    log.info(
        "import %s undone by %s in %.2fs%s",
        import_id,
        requested_by or "?",
        time.perf_counter() - clock,
        " (forced)" if force else "",
    )
    return outcome


def _ranges(conn: Connection, import_id: str, entity: str) -> list[tuple[int, int]]:
    rows = conn.execute(
        sa.text(
            f"SELECT row_id, row_id_end FROM {_CHANGES} WHERE import_id = :iid "
            "AND entity = :e AND action = 'created'"
        ),
        {"iid": import_id, "e": entity},
    )
    return [(int(a), int(b)) for a, b in rows]


def _created(entity: str, column: str) -> str:
    """SQL: `column` holds the id of a row the import created in `entity`."""
    return (
        f"EXISTS (SELECT 1 FROM {_CHANGES} c WHERE c.import_id = :iid AND c.entity = '{entity}' "
        f"AND c.action = 'created' AND {column} BETWEEN c.row_id AND c.row_id_end)"
    )


def _changed_since(
    conn: Connection, ds: Dataset, import_id: str, sqlite: bool
) -> tuple[int, list[str]]:
    """How many touched records changed after the import, and up to 10 of them named."""
    total, named = 0, list[str]()
    params = {"iid": import_id}
    for e in ds.in_order():
        table = q(e.table.name)
        touched = (
            f"SELECT c.row_id AS id FROM {_CHANGES} c LEFT JOIN {table} t ON t.id = c.row_id "
            f"WHERE c.import_id = :iid AND c.entity = '{e.name}' AND c.action <> 'created' "
            f"AND (t.id IS NULL OR {differs('t.updated_at', 'c.new_updated_at', sqlite)}) "
            f"UNION ALL SELECT t.id AS id FROM {table} t JOIN {_CHANGES} c "
            f"ON t.id BETWEEN c.row_id AND c.row_id_end WHERE c.import_id = :iid "
            f"AND c.entity = '{e.name}' AND c.action = 'created' "
            "AND t.updated_at > c.new_updated_at"
        )
        n = int(conn.execute(sa.text(f"SELECT count(*) FROM ({touched}) z"), params).scalar_one())
        if not n:
            continue
        total += n
        if len(named) < MAX_NAMED:
            keys = ", ".join(f"k.{q(f)}" for f in e.natural_key)
            rows = conn.execute(
                sa.text(
                    f"SELECT z.id, {keys} FROM ({touched}) z LEFT JOIN ({key_lookup(ds, e)}) k "
                    f"ON k.id = z.id ORDER BY z.id LIMIT {MAX_NAMED - len(named)}"
                ),
                params,
            )
            for row in rows:
                key = "/".join("" if v is None else str(v) for v in row[1:])
                named.append(f"{e.name} {key or f'(id {row[0]}, deleted)'}")
    return total, named


def _clear_links_to_created(
    conn: Connection, ds: Dataset, e: Entity, params: dict[str, Any]
) -> None:
    """Unset late-bound links to rows about to be deleted (they may point either way)."""
    table = q(e.table.name)
    for ref in e.references:
        if ds.is_late(e.name, ref):
            column = f"{table}.{q(ref.column)}"
            where = _created(ref.parent, column)
            conn.execute(
                sa.text(f"UPDATE {table} SET {q(ref.column)} = NULL WHERE {where}"), params
            )


def _restore(conn: Connection, e: Entity, params: dict[str, Any], sqlite: bool) -> None:
    """Put back the saved old rows of updated and soft-deleted records."""
    table = q(e.table.name)
    cols = [c for c in e.table.c if c.name != "id"]
    where = f"c.import_id = :iid AND c.entity = '{e.name}' AND c.action IN ('updated', 'deleted')"
    if sqlite:
        sets = []
        for c in cols:
            value = f"json_extract(c.old_values, '$.{c.name}')"
            if isinstance(c.type, sa.Float):
                value = f"CAST({value} AS REAL)"
            sets.append(f"{q(c.name)} = {value}")
        conn.execute(
            sa.text(
                f"UPDATE {table} SET {', '.join(sets)} FROM {_CHANGES} c "
                f"WHERE {where} AND {table}.id = c.row_id"
            ),
            params,
        )
        return
    sets = [f"{q(c.name)} = o.{q(c.name)}" for c in cols]
    conn.execute(
        sa.text(
            f"UPDATE {table} SET {', '.join(sets)} FROM (SELECT c.row_id AS row_id_, "
            f"(jsonb_populate_record(CAST(NULL AS {table}), c.old_values)).* "
            f"FROM {_CHANGES} c WHERE {where}) o WHERE {table}.id = o.row_id_"
        ),
        params,
    )


def _delete_created(conn: Connection, e: Entity, import_id: str) -> None:
    table = q(e.table.name)
    for a, b in _ranges(conn, import_id, e.name):
        conn.execute(sa.text(f"DELETE FROM {table} WHERE id BETWEEN :a AND :b"), {"a": a, "b": b})
