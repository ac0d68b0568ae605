"""Local edits kept: a three-way merge of records that came from a source installation.

With `imports.keep_local_edits` on, every bundle import keeps, per record, the values it
imported (the base: `import_bases`, one JSON object of field -> text per entity and
natural key, the source's values even where a local one was kept). On the next import
of that record, per field carried by both:

    changed only at the source   updated (as ever)
    changed only here            kept: the local value stays
    changed on both sides        a conflict, resolved by `imports.conflicts`
                                 (entity.field, entity or "*" -> source | local | review;
                                 default source); `review` keeps the local value and lists
                                 the conflict with both values for a person to decide

A record whose every difference is kept is `same` (no write). Counted per entity as
`kept_local` and `conflicts`; samples of action `keep_local` / `conflict` carry
(field, local value, source value). Entity files (csv, xlsx) are local edits: they
neither write nor use bases. Undo forgets the bases its import wrote (those records merge
two-way, source wins, until their next import).

Values are compared as text of the same SQL type (timestamps as epoch seconds, so a
session's time zone never matters).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.datasets.spec import Kind
from ferry.merge.model import RecordChange
from ferry.merge.shape import Col, Shape, q, same

POLICIES = ("source", "local", "review")
SEP = "chr(31)"


def policy_for(conflicts: tuple[tuple[str, str], ...], entity: str, field: str) -> str:
    """The conflict policy of entity.field: the most specific rule, else `source`."""
    rules = dict(conflicts)
    return rules.get(f"{entity}.{field}") or rules.get(entity) or rules.get("*") or "source"


def _txt(expr: str, col: Col, sqlite: bool) -> str:
    if sqlite:
        return f"CAST({expr} AS TEXT)"
    if col.kind is Kind.TIMESTAMP:
        return f"CAST(extract(epoch from {expr}) AS text)"
    return f"CAST({expr} AS text)"


def key_expr(shape: Shape, row: str, sqlite: bool) -> str:
    """The base's key: the natural key fields as text, joined by a unit separator."""
    parts = [f"CAST({row}.{q(k)} AS TEXT)" for k in shape.entity.natural_key]
    if sqlite:
        return " || char(31) || ".join(parts)
    return f"concat_ws({SEP}, {', '.join(parts)})"


def _base(col: Col, sqlite: bool) -> tuple[str, str]:
    """(has the base this field, the base's text) for base row `b`."""
    name = col.name
    if sqlite:
        return (
            f"json_type(b.vals, '$.\"{name}\"') IS NOT NULL",
            f"json_extract(b.vals, '$.\"{name}\"')",
        )
    return f"(b.vals ? '{name}')", f"(b.vals ->> '{name}')"


def _differs(a: str, b: str, sqlite: bool) -> str:
    return f"({a} IS NOT {b})" if sqlite else f"({a} IS DISTINCT FROM {b})"


def _flags(prefix: str, letter: str, n: int) -> str:
    return " OR ".join(f"{prefix}{letter}{i} = 1" for i in range(n))


def classify(
    conn: Connection,
    shape: Shape,
    conflicts: tuple[tuple[str, str], ...],
    sqlite: bool,
) -> tuple[int, int, list[RecordChange]]:
    """Decide, for the rows to update that have a base, which fields keep their local
    value (call after resolve, before write_bases replaces the bases). Returns (records
    with a kept local edit, records with a conflict, samples); `keep` then applies it."""
    cols = list(shape.written)
    if not cols:
        return 0, 0, []
    table = q(shape.entity.table.name)
    three = f"merge_three_{shape.name}"
    select = ["x.pos AS pos", "x.tid AS tid"]
    for i, c in enumerate(cols):
        has, base = _base(c, sqlite)
        src, here = f"x.{q(c.name)}", f"t.{q(c.target)}"
        source_changed = _differs(_txt(src, c, sqlite), base, sqlite)
        local_changed = _differs(_txt(here, c, sqlite), base, sqlite)
        differ = f"NOT {same(here, src, sqlite)}"
        local_wins = policy_for(conflicts, shape.name, c.name) != "source"
        keep = f"{has} AND {differ} AND {local_changed}"
        if not local_wins:
            keep += f" AND NOT {source_changed}"
        select.append(f"CASE WHEN {keep} THEN 1 ELSE 0 END AS k{i}")
        select.append(
            f"CASE WHEN {has} AND {differ} AND {local_changed} AND {source_changed} "
            f"THEN 1 ELSE 0 END AS c{i}"
        )
        # A difference that remains once kept fields are kept.
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
        f"JOIN import_bases b ON b.entity = '{shape.name}' "
        f"AND b.key = {key_expr(shape, 'x', sqlite)} "
        f"WHERE x.st = 'update'"
    )
    n = len(cols)
    kept, conflicted = conn.exec_driver_sql(
        f"SELECT coalesce(sum(CASE WHEN {_flags('', 'k', n)} THEN 1 ELSE 0 END), 0), "
        f"coalesce(sum(CASE WHEN {_flags('', 'c', n)} THEN 1 ELSE 0 END), 0) FROM {three}"
    ).one()
    if not kept and not conflicted:
        return 0, 0, []
    return int(kept), int(conflicted), _samples(conn, shape, cols, three)


def keep(conn: Connection, shape: Shape, statuses: str, sqlite: bool) -> None:
    """Apply `classify`'s decisions: kept fields take the table's values, and rows left
    with no difference become `same` (call after write_bases, before applying)."""
    cols = list(shape.written)
    table = q(shape.entity.table.name)
    three = f"merge_three_{shape.name}"
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
        key = "/".join(_text(v) for v in row[:n])
        flag = row[n : n + 2 * len(cols)]
        val = row[n + 2 * len(cols) :]
        changes = []
        conflict = False
        for i, c in enumerate(cols):
            if flag[2 * i] or flag[2 * i + 1]:
                changes.append((c.name, _text(val[2 * i]), _text(val[2 * i + 1])))
                conflict = conflict or bool(flag[2 * i + 1])
        out.append(RecordChange(shape.name, key, "conflict" if conflict else "keep_local", changes))
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def write_bases(conn: Connection, shape: Shape, import_id: str, sqlite: bool) -> None:
    """Upsert the bases of the rows this bundle carries (created, updated, same): the
    source's values of the fields it carries (call before `decide` changes them)."""
    cols = list(shape.written)
    if not cols:
        return
    if sqlite:
        pairs = ", ".join(f"'{c.name}', {_txt(f'x.{q(c.name)}', c, True)}" for c in cols)
        vals = f"json_object({pairs})"
    else:
        pairs = ", ".join(f"'{c.name}', {_txt(f'x.{q(c.name)}', c, False)}" for c in cols)
        vals = f"jsonb_build_object({pairs})"
    conn.execute(
        sa.text(
            "INSERT INTO import_bases (entity, key, import_id, vals) "
            f"SELECT :entity, {key_expr(shape, 'x', sqlite)}, :iid, {vals} "
            f"FROM {shape.resolved} x WHERE x.st IN ('create', 'update', 'same') "
            "ON CONFLICT (entity, key) DO UPDATE SET vals = excluded.vals, "
            "import_id = excluded.import_id"
        ),
        {"entity": shape.name, "iid": import_id},
    )


def forget(conn: Connection, import_id: str) -> None:
    """Undo: the bases an import wrote go with it."""
    conn.execute(sa.text("DELETE FROM import_bases WHERE import_id = :iid"), {"iid": import_id})
