"""Pending links: optional links whose target is in neither the bundle nor the database.

A semester's bundle may name a prerequisite or a mentor that lives in another semester.
When the target exists nowhere yet, the link is not dropped: a row in `pending_links`
keeps it (entity, record, field, target key, the import that found it). Every later
import, bundle or csv, binds the waiting links whose target it brought, in its own
transaction, and closes them; undoing that import puts the links back to NULL (from the
saved old rows) and opens them again. So whatever order semesters arrive in, every link
ends up as the source had it.

Binding a waiting link does not touch the record's `updated_at`: the link was the
record's value all along (the source's), only its target was missing; a re-export then
matches the source.

Steps, for every late-bound (optional) reference of every entity this run merged, after
bind_late:
1. `supersede`: the run's created and updated records bring their own link value: their
   open pending links are closed (closed_by = this import).
2. `open_missing`: those whose link names a target that exists nowhere get a new one.
3. `bind_waiting`: open links of other records whose target now exists are bound.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.datasets.spec import Dataset, Entity
from ferry.db import tenant
from ferry.merge.apply import UPDATED_AT, old_row_json
from ferry.merge.model import ImportWarning
from ferry.merge.shape import Ref, Shape, key_lookup, key_match, q

SAMPLE = 5
_LINKS = "pending_links"
# Parameters in a SELECT list need their type spelled out for PostgreSQL.
_IID = "CAST(:iid AS VARCHAR(36))"
_ENTITY = "CAST(:entity AS VARCHAR(64))"
_FIELD = "CAST(:field AS VARCHAR(200))"
_TARGET = "CAST(:target AS VARCHAR(64))"


def joined(exprs: list[str]) -> str:
    """SQL: key parts as one text, "/"-joined (how pending_links stores keys)."""
    parts = [f"CAST({e} AS TEXT)" for e in exprs]
    return parts[0] if len(parts) == 1 else " || '/' || ".join(parts)


def waiting_key(shape: Shape, r: Ref, row_id: str) -> str:
    """SQL: the target key of the open pending link of record `row_id` through `r`, or
    NULL (a record has at most one open link per reference: supersede closes the old)."""
    return (
        f"(SELECT l.target_key FROM {_LINKS} l WHERE l.closed_by IS NULL AND {_mine('l')} "
        f"AND l.entity = '{shape.name}' AND l.field = '{_field(r)}' AND l.row_id = {row_id})"
    )


def _mine(alias: str = _LINKS) -> str:
    """SQL: pending link `alias` is of the acting school (the application scope, the
    first wall: an import binds, closes and counts its own school's links only, whatever
    role runs it; another school may wait for a target of the same key)."""
    return tenant.scope_sql(alias)


def _field(r: Ref) -> str:
    return ",".join(r.ref.fields)


def _run_rows(ds: Dataset, shape: Shape, r: Ref) -> str:
    """SQL: the run's created and updated records (k.id, key text, the link's fields in
    x, the parent's id in p.id or NULL)."""
    table = q(shape.entity.table.name)
    on = " AND ".join(
        f"p.{q(theirs)} = x.{q(own)}"
        for own, theirs in zip(r.ref.fields, r.parent.natural_key, strict=True)
    )
    key = joined([f"x.{q(f)}" for f in shape.entity.natural_key])
    target = joined([f"x.{q(f)}" for f in r.ref.fields])
    present = " AND ".join(f"x.{q(f)} IS NOT NULL" for f in r.ref.fields)
    return (
        f"SELECT k.id AS id, {key} AS record_key, {target} AS target_key, "
        f"CASE WHEN {present} THEN 1 ELSE 0 END AS present, p.id AS pid "
        f"FROM {shape.resolved} x JOIN {table} k ON {key_match(shape, 'k', 'x')} "
        f"LEFT JOIN ({key_lookup(ds, r.parent)}) p ON {on} "
        "WHERE x.st IN ('create', 'update')"
    )


def supersede(conn: Connection, ds: Dataset, shape: Shape, r: Ref, params: dict[str, Any]) -> None:
    """Close the open pending links of the records this run created or updated."""
    conn.execute(
        sa.text(
            f"UPDATE {_LINKS} SET closed_by = :iid, closed_at = :now WHERE closed_by IS NULL "
            f"AND {_mine()} AND entity = :entity AND field = :field AND row_id IN "
            f"(SELECT id FROM ({_run_rows(ds, shape, r)}) y)"
        ),
        {**params, "entity": shape.name, "field": _field(r)},
    )


def open_missing(
    conn: Connection, ds: Dataset, shape: Shape, r: Ref, params: dict[str, Any]
) -> ImportWarning | None:
    """Open a pending link for each created or updated record whose link names a target
    that exists nowhere; the warning saying how many (None when none)."""
    values = {**params, "entity": shape.name, "field": _field(r), "target": r.parent.name}
    conn.execute(
        sa.text(
            f"INSERT INTO {_LINKS} (import_id, entity, row_id, record_key, field, "
            f"target_entity, target_key, created_at) SELECT {_IID}, {_ENTITY}, y.id, "
            f"y.record_key, {_FIELD}, {_TARGET}, y.target_key, :now "
            f"FROM ({_run_rows(ds, shape, r)}) y "
            "WHERE y.present = 1 AND y.pid IS NULL"
        ),
        values,
    )
    return _warning(conn, values, "import_id = :iid", "pending_links", shape, r)


def bind_waiting(
    conn: Connection, ds: Dataset, child: Entity, r: Ref, params: dict[str, Any], sqlite: bool
) -> ImportWarning | None:
    """Bind the open links of other imports' records whose target exists now: save each
    record's old row (undo restores it), set the link, close the pending link."""
    table = q(child.table.name)
    values = {**params, "entity": child.name, "field": _field(r), "target": r.parent.name}
    target = joined([f"p.{q(k)}" for k in r.parent.natural_key])
    found = (
        f"SELECT l.id AS lid, l.row_id AS row_id, p.id AS pid FROM {_LINKS} l "
        f"JOIN ({key_lookup(ds, r.parent)}) p ON {target} = l.target_key "
        f"WHERE l.closed_by IS NULL AND {_mine('l')} AND l.import_id <> :iid "
        "AND l.entity = :entity AND l.field = :field"
    )
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS merge_bind_{child.name}")
    conn.execute(
        sa.text(
            f"CREATE TEMP TABLE merge_bind_{child.name}{'' if sqlite else ' ON COMMIT DROP'} "
            f"AS {found}"
        ),
        values,
    )
    found_table = f"merge_bind_{child.name}"
    n = conn.exec_driver_sql(f"SELECT count(*) FROM {found_table}").scalar_one()
    if not n:
        conn.exec_driver_sql(f"DROP TABLE {found_table}")
        return None
    # One saved old row per record, even when several of its links are bound now.
    conn.execute(
        sa.text(
            "INSERT INTO import_changes (import_id, entity, action, row_id, old_values, "
            f"new_updated_at) SELECT {_IID}, {_ENTITY}, 'updated', t.id, "
            f"{old_row_json(child, 't', sqlite)}, t.{UPDATED_AT} FROM {table} t "
            f"WHERE t.id IN (SELECT row_id FROM {found_table}) AND {tenant.scope_sql('t')} "
            "AND NOT EXISTS (SELECT 1 FROM import_changes c WHERE c.import_id = :iid "
            f"AND {tenant.scope_sql('c')} AND c.entity = :entity AND c.action <> 'created' "
            "AND c.row_id = t.id)"
        ),
        values,
    )
    column = q(r.ref.column)
    conn.exec_driver_sql(
        f"UPDATE {table} SET {column} = (SELECT b.pid FROM {found_table} b "
        f"WHERE b.row_id = {table}.id) WHERE id IN (SELECT row_id FROM {found_table}) "
        f"AND {tenant.scope_sql(table)}"
    )
    conn.execute(
        sa.text(
            f"UPDATE {_LINKS} SET closed_by = :iid, closed_at = :now "
            f"WHERE id IN (SELECT lid FROM {found_table}) AND {_mine()}"
        ),
        values,
    )
    warning = _warning(
        conn,
        values,
        f"closed_by = :iid AND id IN (SELECT lid FROM {found_table})",
        "links_bound",
        None,
        r,
        child,
    )
    conn.exec_driver_sql(f"DROP TABLE {found_table}")
    return warning


def _warning(
    conn: Connection,
    values: dict[str, Any],
    where: str,
    kind: str,
    shape: Shape | None,
    r: Ref,
    entity: Entity | None = None,
) -> ImportWarning | None:
    name = shape.name if shape is not None else (entity.name if entity else "")
    cond = f"{where} AND {_mine()} AND entity = :entity AND field = :field"
    count = conn.execute(
        sa.text(f"SELECT count(*) FROM {_LINKS} WHERE {cond}"), values
    ).scalar_one()
    if not count:
        return None
    sample = [
        f"{a} -> {b}"
        for a, b in conn.execute(
            sa.text(
                f"SELECT record_key, target_key FROM {_LINKS} WHERE {cond} "
                f"ORDER BY id LIMIT {SAMPLE}"
            ),
            values,
        )
    ]
    field, parent = _field(r), r.parent.name
    if kind == "pending_links":
        message = (
            f"{count} {name} link ({field}) to {parent} not yet in this database; they "
            f"will be linked when those {parent} arrive"
        )
    else:
        message = f"{count} {name} waiting for {parent} of this import were linked ({field})"
    return ImportWarning(kind, name, field, int(count), sample, message)


def undo(conn: Connection, import_id: str) -> None:
    """Undoing `import_id`: its pending links go, the links it closed are open again
    (the records' links themselves are restored from the saved old rows)."""
    params = {"iid": import_id}
    conn.execute(sa.text(f"DELETE FROM {_LINKS} WHERE import_id = :iid AND {_mine()}"), params)
    conn.execute(
        sa.text(
            f"UPDATE {_LINKS} SET closed_by = NULL, closed_at = NULL WHERE closed_by = :iid "
            f"AND {_mine()}"
        ),
        params,
    )
