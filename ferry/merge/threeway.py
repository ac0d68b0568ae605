"""Local edits kept: a three-way merge of records that came from a source installation.

The base of a record is what Ferry last imported for it. While a row is as the last
import left it, the row itself is its base: nothing is written for it (an import of a
million records writes no bases). The first local edit of a row (any write outside an
import: a person, another program, a csv or xlsx import of one entity) saves the row as it
was into `import_bases`, once, by a trigger on the table (migration 0011); imports tell
the trigger they are writing (PostgreSQL: `SET LOCAL ferry.importing`; SQLite: a row in
`import_running` inside their own transaction).

With `imports.keep_local_edits` on, a bundle import compares, per field it carries, for
the rows to update that have a base:

    changed only at the source   updated (as ever)
    changed only here            kept: the local value stays
    changed on both sides        a conflict, resolved by `imports.conflicts`
                                 (entity.field, entity or "*" -> source | local | review;
                                 default source); `review` keeps the local value and lists
                                 the conflict with both values for a person to decide

A record whose every difference is kept is `same` (no write). Counted per entity as
`kept_local` and `conflicts`; samples of action `keep_local` / `conflict` carry (field,
local value, source value). Afterwards the base of a row that kept a local value becomes
the source's values (so the next import compares against what it imported), and the base
of a row that now equals the source is dropped; the old bases are saved for undo
(import_changes, action `base`). Every bundle import, three-way or not, drops the bases
of the rows it wrote: they equal the source again.

Values are compared typed: the base row is read back as a row of the table
(PostgreSQL `jsonb_populate_record`; SQLite `json_extract`, floats kept at 17 digits).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.datasets.spec import Kind
from ferry.db import tenant
from ferry.db.import_models import ImportConflict
from ferry.merge.model import RecordChange
from ferry.merge.shape import Col, Shape, q, same, text_of

POLICIES = ("source", "local", "review")
C: sa.Table = ImportConflict.__table__  # type: ignore[assignment]


def importing(conn: Connection, on: bool) -> None:
    """Tell the triggers that save bases that this transaction is an import (its writes
    are no local edits); SQLite: call again with on=False right before committing."""
    if conn.dialect.name == "sqlite":
        if on:
            conn.exec_driver_sql("INSERT OR IGNORE INTO import_running (id) VALUES (1)")
        else:
            conn.exec_driver_sql("DELETE FROM import_running")
    elif on:
        conn.exec_driver_sql("SET LOCAL ferry.importing = 'on'")


def policy_for(conflicts: tuple[tuple[str, str], ...], entity: str, field: str) -> str:
    """The conflict policy of entity.field: the most specific rule, else `source`."""
    rules = dict(conflicts)
    return rules.get(f"{entity}.{field}") or rules.get(entity) or rules.get("*") or "source"


def has_bases(conn: Connection, shape: Shape) -> bool:
    return bool(
        conn.execute(
            sa.text(
                "SELECT EXISTS (SELECT 1 FROM import_bases b WHERE b.entity = :e AND "
                f"{tenant.scope_sql('b')})"
            ),
            {"e": shape.name},
        ).scalar_one()
    )


def _bases(shape: Shape, sqlite: bool) -> str:
    """A subquery `bv` of the entity's bases as rows: row_id_ and the table's columns."""
    table = q(shape.entity.table.name)
    e = shape.name.replace("'", "''")
    if not sqlite:
        return (
            f"(SELECT b.row_id AS row_id_, r.* FROM import_bases b CROSS JOIN LATERAL "
            f"jsonb_populate_record(CAST(NULL AS {table}), b.vals) r WHERE b.entity = '{e}' "
            f"AND {tenant.scope_sql('b')})"
        )
    cols = []
    for c in shape.entity.table.c:
        value = f"json_extract(b.vals, '$.\"{c.name}\"')"
        if isinstance(c.type, sa.Float):
            value = f"CAST({value} AS REAL)"
        cols.append(f"{value} AS {q(c.name)}")
    return (
        f"(SELECT b.row_id AS row_id_, {', '.join(cols)} FROM import_bases b "
        f"WHERE b.entity = '{e}' AND {tenant.scope_sql('b')})"
    )


def _flags(prefix: str, letter: str, n: int) -> str:
    return " OR ".join(f"{prefix}{letter}{i} = 1" for i in range(n))


def _three(shape: Shape) -> str:
    return f"merge_three_{shape.name}"


def classify(
    conn: Connection,
    shape: Shape,
    conflicts: tuple[tuple[str, str], ...],
    sqlite: bool,
) -> tuple[int, int, list[RecordChange]]:
    """Decide, for the rows to update that have a base, which fields keep their local
    value (call after resolve, when has_bases). Returns (records with a kept local edit,
    records with a conflict, samples); `keep` then applies it."""
    cols = list(shape.written)
    table = q(shape.entity.table.name)
    three = _three(shape)
    select = ["x.pos AS pos", "x.tid AS tid"]
    for i, c in enumerate(cols):
        src, here, base = f"x.{q(c.name)}", f"t.{q(c.target)}", f"bv.{q(c.target)}"
        source_changed = f"NOT {same(src, base, sqlite)}"
        local_changed = f"NOT {same(here, base, sqlite)}"
        differ = f"NOT {same(here, src, sqlite)}"
        keep = f"{differ} AND {local_changed}"
        if policy_for(conflicts, shape.name, c.name) == "source":
            keep += f" AND NOT ({source_changed})"
        select.append(f"CASE WHEN {keep} THEN 1 ELSE 0 END AS k{i}")
        select.append(
            f"CASE WHEN {differ} AND {local_changed} AND {source_changed} THEN 1 ELSE 0 END AS c{i}"
        )
        select.append(f"CASE WHEN {differ} THEN 1 ELSE 0 END AS d{i}")
    refs_same = " AND ".join(
        [same(f"t.{q(r.ref.column)}", f"x.r{r.index}", sqlite) for r in shape.written_refs]
        or ["1 = 1"]
    )
    select.append(f"CASE WHEN {refs_same} THEN 1 ELSE 0 END AS refs_same")
    temp = "" if sqlite else " ON COMMIT DROP"
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {three}")
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE {three}{temp} AS SELECT {', '.join(select)} "
        f"FROM {shape.resolved} x JOIN {table} t ON t.id = x.tid "
        f"JOIN {_bases(shape, sqlite)} bv ON bv.row_id_ = x.tid WHERE x.st = 'update'"
    )
    n = len(cols)
    if not n:
        return 0, 0, []
    kept, conflicted = conn.exec_driver_sql(
        f"SELECT coalesce(sum(CASE WHEN {_flags('', 'k', n)} THEN 1 ELSE 0 END), 0), "
        f"coalesce(sum(CASE WHEN {_flags('', 'c', n)} THEN 1 ELSE 0 END), 0) FROM {three}"
    ).one()
    if not kept and not conflicted:
        return 0, 0, []
    return int(kept), int(conflicted), _samples(conn, shape, cols, three)


def keep(conn: Connection, shape: Shape, statuses: str) -> None:
    """Apply `classify`'s decisions: kept fields take the table's values, and rows left
    with no difference become `same` (call after rebase, before applying)."""
    cols = list(shape.written)
    if not cols:
        return
    table = q(shape.entity.table.name)
    three = _three(shape)
    # The rows' kept fields take the table's values (the staged rows on PostgreSQL's
    # narrow path, where the resolved rows are a view over them).
    target = shape.resolved if statuses == shape.resolved else shape.stage
    for i, c in enumerate(cols):
        conn.exec_driver_sql(
            f"UPDATE {target} SET {q(c.name)} = (SELECT t.{q(c.target)} FROM {table} t "
            f"JOIN {three} k ON k.tid = t.id WHERE k.pos = {target}.pos) "
            f"WHERE pos IN (SELECT pos FROM {three} WHERE k{i} = 1)"
        )
    remaining = " OR ".join(f"(d{i} = 1 AND k{i} = 0)" for i in range(len(cols)))
    conn.exec_driver_sql(
        f"UPDATE {statuses} SET st = 'same' WHERE pos IN (SELECT pos FROM {three} "
        f"WHERE refs_same = 1 AND NOT ({remaining}))"
    )


def rebase(
    conn: Connection, shape: Shape, statuses: str, import_id: str, sqlite: bool, kept: bool
) -> None:
    """After classify (`kept`: some row keeps a local value): rows that keep one get the
    source's values as their base; the bases of the other rows this import writes are
    dropped (they equal the source now). The old bases are saved for undo."""
    cols = list(shape.written)
    three = _three(shape)
    mine = tenant.scope_sql("import_bases")
    keeping = f"SELECT tid FROM {three} WHERE {_flags('', 'k', len(cols))}" if kept and cols else ""
    written = f"SELECT tid FROM {statuses} WHERE st IN ('update', 'same')"
    # Saved under "base:<entity>": undo's own checks read only the entities' rows.
    params = {"e": shape.name, "iid": import_id, "saved": f"base:{shape.name}"}
    conn.execute(
        sa.text(
            "INSERT INTO import_changes (import_id, entity, action, row_id, old_values) "
            "SELECT :iid, :saved, 'base', b.row_id, b.vals FROM import_bases b "
            f"WHERE b.entity = :e AND {tenant.scope_sql('b')} AND b.row_id IN ({written})"
        ),
        params,
    )
    if keeping:
        if sqlite:
            sets = ", ".join(f"'$.\"{c.target}\"', {_lite(c)}" for c in cols)
            new = f"json_set(json_object(), {sets})"
            merged = f"json_patch(import_bases.vals, {new})"
        else:
            pairs = ", ".join(f"'{c.target}', x.{q(c.name)}" for c in cols)
            merged = f"import_bases.vals || jsonb_build_object({pairs})"
        conn.execute(
            sa.text(
                f"UPDATE import_bases SET vals = (SELECT {merged} FROM {shape.resolved} x "
                "WHERE x.tid = import_bases.row_id), import_id = :iid "
                f"WHERE entity = :e AND {mine} AND row_id IN ({keeping})"
            ),
            params,
        )
    drop = f"entity = :e AND {mine} AND row_id IN ({written})"
    if keeping:
        drop += f" AND row_id NOT IN ({keeping})"
    conn.execute(sa.text(f"DELETE FROM import_bases WHERE {drop}"), params)


def _lite(c: Col) -> str:
    """A staged value for SQLite's JSON: floats as 17-digit text (its JSON rounds to 15)."""
    value = f"x.{q(c.name)}"
    if c.kind is Kind.FLOAT:
        return f"CASE WHEN {value} IS NULL THEN NULL ELSE printf('%!.17g', {value}) END"
    return value


def _samples(
    conn: Connection, shape: Shape, cols: list[Col], three: str, limit: int = 20
) -> list[RecordChange]:
    table = q(shape.entity.table.name)
    keys = ", ".join(f"x.{q(k)}" for k in shape.entity.natural_key)
    flags = ", ".join(f"k.k{i}, k.c{i}" for i in range(len(cols)))
    vals = ", ".join(f"t.{q(c.target)}, x.{q(c.name)}" for c in cols)
    rows = conn.exec_driver_sql(
        f"SELECT {keys}, {flags}, {vals} FROM {three} k JOIN {shape.resolved} x ON x.pos = k.pos "
        f"JOIN {table} t ON t.id = k.tid WHERE {_flags('k.', 'k', len(cols))} "
        f"OR {_flags('k.', 'c', len(cols))} ORDER BY k.pos LIMIT {int(limit)}"
    ).all()
    n = len(shape.entity.natural_key)
    out = []
    for row in rows:
        key = "/".join(text_of(v) for v in row[:n])
        flag = row[n : n + 2 * len(cols)]
        val = row[n + 2 * len(cols) :]
        changes = []
        conflict = False
        for i, c in enumerate(cols):
            if flag[2 * i] or flag[2 * i + 1]:
                changes.append((c.name, text_of(val[2 * i]), text_of(val[2 * i + 1])))
                conflict = conflict or bool(flag[2 * i + 1])
        out.append(RecordChange(shape.name, key, "conflict" if conflict else "keep_local", changes))
    return out


def record_review(
    conn: Connection,
    shape: Shape,
    conflicts: tuple[tuple[str, str], ...],
    import_id: str,
    now: dt.datetime,
) -> int:
    """List the conflicts of fields whose policy is `review` (after classify, in the
    import's transaction) in import_conflicts, for a person to decide
    (ferry.merge.conflicts); an open conflict of the same field of the same row is
    superseded by the new one. Returns how many were listed."""
    cols = [
        (i, c)
        for i, c in enumerate(shape.written)
        if policy_for(conflicts, shape.name, c.name) == "review"
    ]
    if not cols:
        return 0
    table = q(shape.entity.table.name)
    keys = ", ".join(f"x.{q(k)}" for k in shape.entity.natural_key)
    n = len(shape.entity.natural_key)
    listed = []
    for i, c in cols:
        rows = conn.exec_driver_sql(
            f"SELECT k.tid, {keys}, t.{q(c.target)}, x.{q(c.name)} FROM {_three(shape)} k "
            f"JOIN {shape.resolved} x ON x.pos = k.pos JOIN {table} t ON t.id = k.tid "
            f"WHERE k.c{i} = 1 ORDER BY k.pos"
        ).all()
        for row in rows:
            listed.append(
                {
                    "import_id": import_id,
                    "entity": shape.name,
                    "row_id": int(row[0]),
                    "natural_key": "/".join(text_of(v) for v in row[1 : 1 + n]),
                    "field": c.name,
                    "local_value": {"v": json_value(row[1 + n], c.kind)},
                    "source_value": {"v": json_value(row[2 + n], c.kind)},
                    "created_at": now,
                }
            )
    if not listed:
        return 0
    for i, c in cols:
        conn.execute(
            sa.text(
                "UPDATE import_conflicts SET resolution = 'superseded', resolved_at = :now, "
                "resolved_import_id = :iid WHERE entity = :e AND field = :f AND resolution "
                f"IS NULL AND {tenant.scope_sql('import_conflicts')} AND row_id IN "
                f"(SELECT tid FROM {_three(shape)} WHERE c{i} = 1)"
            ).bindparams(sa.bindparam("now", type_=sa.DateTime(timezone=True))),
            {"now": now, "iid": import_id, "e": shape.name, "f": c.name},
        )
    conn.execute(C.insert(), listed)
    return len(listed)


def json_value(value: Any, kind: Kind) -> Any:
    """A stored or staged value as JSON keeps it: dates and instants as ISO text,
    numbers as numbers (SQLite's staged text numbers too)."""
    if value is None:
        return None
    if kind is Kind.FLOAT:
        return float(value)
    if kind is Kind.INT:
        return int(value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return value


def forget(conn: Connection, import_id: str) -> None:
    """Undo: the bases an import wrote go, and the conflicts it listed for review; those
    it resolved or superseded are open again. The bases it replaced or dropped come
    back; bases of rows it created go with the rows
    (SQLite reuses their ids)."""
    mine = C.c.school_id == tenant.school_id()
    conn.execute(C.delete().where(mine, C.c.import_id == import_id))
    conn.execute(
        C.update()
        .where(mine, C.c.resolved_import_id == import_id)
        .values(resolution=None, resolved_by="", resolved_at=None, resolved_import_id=None)
    )
    _forget_bases(conn, import_id)


def _forget_bases(conn: Connection, import_id: str) -> None:
    """Undo: the bases an import wrote go, and
    those it replaced or dropped come back; bases of rows it created go with the rows
    (SQLite reuses their ids)."""
    mine = tenant.scope_sql("import_bases")
    conn.execute(
        sa.text(f"DELETE FROM import_bases WHERE import_id = :iid AND {mine}"), {"iid": import_id}
    )
    conn.execute(
        sa.text(
            f"DELETE FROM import_bases WHERE {mine} AND EXISTS (SELECT 1 FROM import_changes c "
            "WHERE c.import_id = :iid AND c.action = 'created' AND c.entity = import_bases.entity "
            "AND import_bases.row_id BETWEEN c.row_id AND c.row_id_end AND "
            f"{tenant.scope_sql('c')})"
        ),
        {"iid": import_id},
    )
    conn.execute(
        sa.text(
            "INSERT INTO import_bases (entity, row_id, import_id, vals) "
            "SELECT substr(c.entity, 6), c.row_id, '', c.old_values FROM import_changes c "
            f"WHERE c.import_id = :iid AND {tenant.scope_sql('c')} AND c.action = 'base' AND "
            "NOT EXISTS (SELECT 1 FROM import_bases b WHERE b.entity = substr(c.entity, 6) AND "
            f"b.row_id = c.row_id AND {tenant.scope_sql('b')})"
        ),
        {"iid": import_id},
    )
