"""Applying one resolved entity with set-based SQL, recording what changed for undo.

Created rows keep the bundle's created_at and updated_at (a faithful copy of the source;
missing ones become the import time). Updated and soft-deleted rows get updated_at = the
import time and keep their created_at; the old row is saved as JSON in import_changes.
Late-bound references are set after every entity's rows exist. A large load into a
PostgreSQL table rebuilds its indexes and foreign keys afterwards (see `_bulk_insert`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.datasets.spec import Dataset, Entity
from ferry.db import tenant
from ferry.merge.shape import Ref, Shape, differs, key_lookup, key_match, q
from ferry.merge.values import SQLITE_TS

UPDATED_AT = "updated_at"  # the Timestamps column every dataset table carries


def ts_param(value: dt.datetime, sqlite: bool) -> Any:
    """A timestamp as the backend stores it (SQLite: SQLAlchemy's naive UTC text)."""
    return value.astimezone(dt.UTC).strftime(SQLITE_TS) if sqlite else value


def old_row_json(entity: Entity, alias: str, sqlite: bool) -> str:
    """SQL building the JSON of a whole row of `entity` (for restoring it on undo).
    SQLite's JSON would round floats to 15 digits, so they travel as 17-digit text."""
    if not sqlite:
        return f"to_jsonb({alias})"
    parts = []
    for col in entity.table.c:
        if col.name == "id":
            continue
        expr = f"{alias}.{q(col.name)}"
        if isinstance(col.type, sa.Float):
            expr = f"CASE WHEN {expr} IS NULL THEN NULL ELSE printf('%!.17g', {expr}) END"
        parts.append(f"'{col.name}', {expr}")
    return f"json_object({', '.join(parts)})"


def _params(import_id: str, shape: Shape, now: Any) -> dict[str, Any]:
    return {"iid": import_id, "entity": shape.name, "now": now}


def insert_new(
    conn: Connection,
    shape: Shape,
    import_id: str,
    now: Any,
    sqlite: bool,
    creating: int,
    in_order: bool = False,
) -> None:
    """INSERT the rows with status `create` (`in_order`: in bundle order); record them as
    id ranges, each with the newest updated_at it holds (undo treats a later one as a
    change made since).
    On PostgreSQL a load that at least doubles a big table takes the bulk path
    (`_bulk_insert`)."""
    table = q(shape.entity.table.name)
    cols, exprs = [], []
    for c in shape.own:
        cols.append(q(c.target))
        value = f"x.{q(c.name)}"
        if c.bookkeeping:  # maybe staged as text on PostgreSQL (ferry.merge.shape)
            value = (
                f"COALESCE({value}, :now)"
                if sqlite
                else f"COALESCE(CAST({value} AS timestamptz), :now)"
            )
        exprs.append(value)
    for r in shape.refs:
        if not r.late:
            cols.append(q(r.ref.column))
            exprs.append(f"x.r{r.index}")
    insert = (
        f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(exprs)} "
        f"FROM {shape.resolved} x WHERE x.st = 'create'"
    )
    if in_order:
        # New ids follow the bundle's order (a restored backup gets the ids it had);
        # otherwise PostgreSQL inserts in whatever order its joins produced.
        insert += " ORDER BY x.pos"
    params = _params(import_id, shape, now)
    # What the statistics knew before this run's rows (the bulk path's CREATE INDEX
    # rewrites pg_class.reltuples with the new count, statistics or not).
    known = None if sqlite else _known_rows(conn, table, creating)
    if not sqlite and _is_bulk(conn, shape, creating):
        _bulk_insert(conn, shape, insert, params)
        _refresh_stats(conn, table, creating, known)
        return
    if sqlite:
        # Holding SQLite's write lock, new rowids are max(id)+1, +2, ...: one range.
        before = conn.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table}").scalar_one()
        conn.execute(sa.text(insert), params)
        after = conn.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table}").scalar_one()
        if after > before:
            conn.execute(
                sa.text(
                    "INSERT INTO import_changes (import_id, entity, action, row_id, row_id_end, "
                    f"new_updated_at) SELECT :iid, :entity, 'created', :a, :b, max({UPDATED_AT}) "
                    f"FROM {table} WHERE id BETWEEN :a AND :b"
                ),
                {**params, "a": before + 1, "b": after},
            )
        return
    conn.execute(
        sa.text(
            f"WITH ins AS ({insert} RETURNING id, {UPDATED_AT} AS u) "
            "INSERT INTO import_changes (import_id, entity, action, row_id, row_id_end, "
            "new_updated_at) SELECT :iid, :entity, 'created', min(id), max(id), max(u) "
            "FROM (SELECT id, u, id - row_number() OVER (ORDER BY id) AS g FROM ins) y GROUP BY g"
        ),
        params,
    )
    _refresh_stats(conn, table, creating, known)


# Fewer created rows never refresh a table's statistics inside the import.
ANALYZE_MIN_ROWS = 1_000


def _known_rows(conn: Connection, table: str, creating: int) -> float | None:
    """The rows `table`'s statistics know of (pg_class.reltuples, -1: never analyzed),
    read before the insert; None when so few rows are created that it never matters."""
    if creating < ANALYZE_MIN_ROWS:
        return None
    known = conn.execute(
        sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}
    ).scalar()
    return -1.0 if known is None else float(known)


def _refresh_stats(conn: Connection, table: str, creating: int, known: float | None) -> None:
    """ANALYZE `table` when this run created more rows than its statistics knew of
    before it (`known`, from _known_rows; a table never analyzed knows of none), in the
    import's transaction, which sees its own rows. The statements after it (links,
    counts, report versions) are planned on the new rows then: with the row-level
    security policy's `school_id = $n` on every scan, a table without statistics is
    estimated at a handful of rows, and one count per semester took over a minute
    instead of a fraction of a second on 100k records. (Read after a bulk load, the
    count would be the rebuilt indexes' own, and the table, never analyzed, was left
    so: the kept semester counts took 10 s of a 1M-record import instead of 0.3 s.)"""
    if known is None or creating < ANALYZE_MIN_ROWS:
        return
    if known < creating:
        conn.exec_driver_sql(f"ANALYZE {table}")


BULK_MIN_ROWS = 20_000  # fewer created rows always take the plain INSERT

# The table's own checks that cost per inserted row and can be rebuilt set-wise: validated
# outgoing foreign keys and unique/exclusion constraints (unless a foreign key relies on
# their index). Foreign keys last, so that they are re-added last.
_DROPPABLE_CONSTRAINTS = """
SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c
WHERE c.conrelid = CAST(:t AS regclass) AND (
    (c.contype = 'f' AND c.convalidated)
    OR (c.contype IN ('u', 'x')
        AND NOT EXISTS (SELECT 1 FROM pg_constraint r WHERE r.contype = 'f'
                        AND r.conindid = c.conindid)))
ORDER BY c.contype = 'f', c.conname
"""
# Other indexes, except the primary key and any index a constraint relies on.
_DROPPABLE_INDEXES = """
SELECT CAST(CAST(i.indexrelid AS regclass) AS text), pg_get_indexdef(i.indexrelid) FROM pg_index i
WHERE i.indrelid = CAST(:t AS regclass) AND NOT i.indisprimary
    AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
ORDER BY 1
"""


def _is_bulk(conn: Connection, shape: Shape, creating: int) -> bool:
    """At least BULK_MIN_ROWS rows to create and the table's rows of the acting school
    at least double (counted only up to that many; the application scope, as row-level
    security would count them)."""
    table = q(shape.entity.table.name)
    if creating < BULK_MIN_ROWS:
        return False
    held = conn.exec_driver_sql(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} k WHERE {tenant.scope_sql('k')} "
        f"LIMIT {int(creating) + 1}) t"
    ).scalar_one()
    return bool(held <= creating)


def _ddl(conn: Connection, statement: str) -> None:
    """Run DDL read from the catalog as is (no placeholders: it may hold a `%`)."""
    conn.exec_driver_sql(statement, execution_options={"no_parameters": True})


def _bulk_insert(conn: Connection, shape: Shape, insert: str, params: dict[str, Any]) -> None:
    """PostgreSQL bulk load: INSERT without the table's own foreign keys and secondary
    indexes, then rebuild them, all in the import's transaction.

    Per inserted row, each foreign key fires an RI trigger (one parent lookup per row) and
    each index is updated one entry at a time; for a table that at least doubles it is
    several times faster to rebuild the indexes by sorting and to re-add the foreign keys,
    which PostgreSQL validates with one join. The definitions are read from the catalog and
    recreated as they were, same names; the primary key stays (children reference it). A
    violation surfaces when a constraint is re-added, as the same IntegrityError the
    triggers would raise, and fails the run; a rollback (dry run, abort, crash) restores
    the dropped constraints with everything else.

    The table is locked ACCESS EXCLUSIVE up front (the ALTER TABLEs need it; taking it
    first avoids a lock upgrade) until the import commits: other sessions can neither
    read nor write it meanwhile, and re-adding a foreign key blocks writes to the parent.
    Acceptable for a bulk load (as for pg_restore); smaller imports keep the plain INSERT.

    Holding the lock, nobody else inserts, so the created rows are exactly those above the
    previous max(id): one aggregate instead of RETURNING every row.
    """
    table = q(shape.entity.table.name)
    conn.exec_driver_sql(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    t = {"t": table}
    constraints = conn.execute(sa.text(_DROPPABLE_CONSTRAINTS), t).all()
    indexes = conn.execute(sa.text(_DROPPABLE_INDEXES), t).all()
    for name, _ in constraints:
        _ddl(conn, f"ALTER TABLE {table} DROP CONSTRAINT {q(name)}")
    for name, _ in indexes:
        _ddl(conn, f"DROP INDEX {name}")
    before = conn.exec_driver_sql(
        f"SELECT coalesce(max(id), 0) FROM {table} k WHERE {tenant.scope_sql('k')}"
    ).scalar_one()
    inserted = conn.execute(sa.text(insert), params).rowcount
    for _, definition in indexes:
        _ddl(conn, definition)
    for name, definition in constraints:
        _ddl(conn, f"ALTER TABLE {table} ADD CONSTRAINT {q(name)} {definition}")
    _record_created_above(conn, table, before, inserted, params)


def _record_created_above(
    conn: Connection, table: str, before: int, inserted: int, params: dict[str, Any]
) -> None:
    """Record the acting school's rows above id `before` (all created by this run, under
    its lock) as id ranges: usually one, found with one aggregate."""
    mine = tenant.scope_sql("k")
    count, low, high, newest = conn.execute(
        sa.text(
            f"SELECT count(*), min(id), max(id), max({UPDATED_AT}) FROM {table} k "
            f"WHERE id > :b AND {mine}"
        ),
        {"b": before},
    ).one()
    if count != inserted:  # only when the id sequence lags behind the table's ids
        raise RuntimeError(
            f"{table}: {inserted - count} created row(s) got an id not above the previous "
            f"max id {before}; is the id sequence behind the table?"
        )
    if not count:
        return
    columns = "(import_id, entity, action, row_id, row_id_end, new_updated_at)"
    if high - low + 1 == count:
        conn.execute(
            sa.text(
                f"INSERT INTO import_changes {columns} "
                "VALUES (:iid, :entity, 'created', :a, :z, :u)"
            ),
            {**params, "a": low, "z": high, "u": newest},
        )
        return
    conn.execute(
        sa.text(
            f"INSERT INTO import_changes {columns} SELECT :iid, :entity, 'created', min(id), "
            f"max(id), max(u) FROM (SELECT id, {UPDATED_AT} AS u, "
            f"id - row_number() OVER (ORDER BY id) AS g FROM {table} k WHERE id > :b "
            f"AND {mine}) y GROUP BY g"
        ),
        {**params, "b": before},
    )


def update_changed(conn: Connection, shape: Shape, import_id: str, now: Any, sqlite: bool) -> None:
    """Save the old rows of status `update`, then UPDATE them from the bundle."""
    table = q(shape.entity.table.name)
    params = _params(import_id, shape, now)
    conn.execute(
        sa.text(
            "INSERT INTO import_changes (import_id, entity, action, row_id, old_values, "
            f"new_updated_at) SELECT :iid, :entity, 'updated', t.id, "
            f"{old_row_json(shape.entity, 't', sqlite)}, :now "
            f"FROM {table} t JOIN {shape.resolved} x ON t.id = x.tid WHERE x.st = 'update'"
        ),
        params,
    )
    # Only the carried fields: a partial file changes only what it carries.
    sets = [f"{q(c.target)} = x.{q(c.name)}" for c in shape.written]
    sets += [f"{q(r.ref.column)} = x.r{r.index}" for r in shape.written_refs if not r.late]
    sets.append(f"{UPDATED_AT} = :now")
    conn.execute(
        sa.text(
            f"UPDATE {table} SET {', '.join(sets)} FROM {shape.resolved} x "
            f"WHERE {table}.id = x.tid AND x.st = 'update'"
        ),
        params,
    )


def bind_late(conn: Connection, ds: Dataset, shape: Shape, r: Ref, sqlite: bool) -> None:
    """Set a late-bound reference of the created and updated rows, now that every
    parent exists."""
    table = q(shape.entity.table.name)
    keys = [f"x.{q(f)}" for f in r.ref.fields]
    present = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    on = " AND ".join(
        f"p.{q(theirs)} = x.{q(own)}"
        for own, theirs in zip(r.ref.fields, r.parent.natural_key, strict=True)
    )
    column = q(r.ref.column)
    conn.exec_driver_sql(
        f"UPDATE {table} SET {column} = y.pid FROM (SELECT k.id AS tid, p.id AS pid "
        f"FROM {shape.resolved} x JOIN {table} k ON {key_match(shape, 'k', 'x')} "
        f"LEFT JOIN ({key_lookup(ds, r.parent)}) p ON {on} "
        f"WHERE x.st IN ('create', 'update') AND (({present}) OR x.st = 'update')) y "
        f"WHERE {table}.id = y.tid AND {differs(f'{table}.{column}', 'y.pid', sqlite)}"
    )


def soft_delete_missing(
    conn: Connection, shape: Shape, import_id: str, now: Any, sqlite: bool, statuses: str
) -> int:
    """Replace: soft-delete the rows that were live in scope and that the bundle lacks
    (`statuses`: the table of resolved statuses, see plan.resolve). Returns how many."""
    table = q(shape.entity.table.name)
    params = _params(import_id, shape, now)
    where = (
        f"{table}.id IN (SELECT id FROM {shape.scope}) AND {table}.deleted_at IS NULL AND "
        f"NOT EXISTS (SELECT 1 FROM {statuses} x WHERE x.tid = {table}.id)"
    )
    conn.execute(
        sa.text(
            "INSERT INTO import_changes (import_id, entity, action, row_id, old_values, "
            f"new_updated_at) SELECT :iid, :entity, 'deleted', {table}.id, "
            f"{old_row_json(shape.entity, table, sqlite)}, :now FROM {table} WHERE {where}"
        ),
        params,
    )
    result = conn.execute(
        sa.text(f"UPDATE {table} SET deleted_at = :now, {UPDATED_AT} = :now WHERE {where}"),
        params,
    )
    return int(result.rowcount)


def deleted_sample(
    conn: Connection, ds: Dataset, shape: Shape, limit: int, statuses: str
) -> list[str]:
    """Natural keys of up to `limit` rows a replace is about to soft-delete."""
    table = q(shape.entity.table.name)
    keys = ", ".join(f"k.{q(n)}" for n in shape.entity.natural_key)
    rows = conn.exec_driver_sql(
        f"SELECT {keys} FROM ({key_lookup(ds, shape.entity)}) k JOIN {table} t ON t.id = k.id "
        f"WHERE k.id IN (SELECT id FROM {shape.scope}) AND t.deleted_at IS NULL AND "
        f"NOT EXISTS (SELECT 1 FROM {statuses} x WHERE x.tid = k.id) "
        f"ORDER BY k.id LIMIT {int(limit)}"
    )
    return ["/".join("" if v is None else str(v) for v in row) for row in rows]
