"""Every record of a plan: what a dry run decides for each record, written as JSON Lines
while the run goes (ImportOptions.plan_records; `ferry import FILE --dry-run --plan-out`).

One line per record, in the run's order (entities in dependency order, records by their
position in the file; a replace's soft-deletes after every entity, by row id):

    {"entity": "courses", "key": "MATH101-2026F", "position": 3, "action": "create",
     "fields": {"title": "Algebra", ...}}
    {"entity": ..., "action": "update", "changes": [{"field": "title", "before": "A",
     "after": "B"}, ...]}
    {"entity": ..., "action": "delete", ...}      arrives soft-deleted, live here; or
                                                  (position null) a replace soft-deletes
                                                  it because the bundle lacks it
    {"entity": ..., "action": "unchanged" | "skip" | "unmatched" | "error"}
    {"entity": ..., "action": "rename", "changes": [{"field": "student_id", ...}]}

Values are text as the samples show them ("" for none; dates ISO). An update lists only the
fields whose value changes (a three-way merge's kept local values are no change); links to
a parent are part of the key, and late links (prerequisite, mentor) are bound after the
records. Each entity's rows are read with a streaming cursor and written as they come:
memory does not grow with the bundle. The plan's digest binds the same decisions (each
record's position, status and the version of the row it reads), so the file and the digest
describe one plan.

On PostgreSQL the lines are composed by the server (`line_sql`), each record's JSON text
with the values as `text_of` shows them (`_pg_text`), in the same pass that resolves the
records (ferry.merge.plan.resolve with `lines`: the staged row, its status and the old
row's id are at hand there), into a column of the table of statuses; writing them is one
ordered read of that table through a server-side cursor, BATCH lines at a time, joined and
written as they come: no second scan of the staged rows and no Python work per record but
taking its line. The old row is read only for the records to update (a probe by id, not a
join over the whole table). When the three-way merge kept local values (it changes
statuses and staged values after the resolve), the entity's lines are composed again from
its resolved rows (`_pg_lines`). SQLite composes the lines in Python (`_py_entity`);
tests/merge/test_plans_records.py holds the server's lines (wide resolve, narrow resolve,
composed again) and Python's byte for byte equal.
"""

from __future__ import annotations

import json
from typing import IO, Any

from sqlalchemy.engine import Connection

from ferry.datasets.spec import Dataset, Kind
from ferry.merge.model import RecordChange
from ferry.merge.shape import Col, Shape, key_lookup, q, text_of

BATCH = 5000
ACTIONS = {"same": "unchanged", "create": "create", "skip": "skip", "unmatched": "unmatched"}


class PlanRecords:
    """Writes a plan's records to `out` (bytes, one JSON object a line)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.count = 0

    def _line(self, record: dict[str, Any]) -> None:
        self.out.write(
            json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        )
        self.count += 1

    def renames(self, samples: list[RecordChange]) -> None:
        for c in samples:
            self._line(
                {
                    "entity": c.entity,
                    "key": c.natural_key,
                    "position": None,
                    "action": "rename",
                    "changes": [{"field": f, "before": b, "after": a} for f, b, a in c.changes],
                }
            )

    def entity(self, conn: Connection, shape: Shape, composed: str | None = None) -> None:
        """The decision for each of the entity's records (after resolve and the three-way
        merge, before the entity is applied). `composed`: the table resolve returned,
        when it composed the lines (plan.resolve with `lines`, PostgreSQL) and they still
        hold."""
        if conn.dialect.name == "postgresql":
            if composed is not None:
                self._pg_write(conn, shape, f"SELECT plan_line FROM {composed} ORDER BY pos")
            else:
                self._pg_write(conn, shape, _pg_lines(shape))
        else:
            self._py_entity(conn, shape)

    def _pg_write(self, conn: Connection, shape: Shape, lines_sql: str) -> None:
        raw = conn.connection.driver_connection
        assert raw is not None
        # A server-side cursor in the import's transaction, read BATCH lines at a time
        # straight from the driver (no row object per record).
        with raw.cursor(name=f"ferry_plan_{shape.name}") as cur:
            cur.execute(lines_sql)
            while lines := cur.fetchmany(BATCH):
                self.out.write("\n".join([line for (line,) in lines]).encode() + b"\n")
                self.count += len(lines)

    def _py_entity(self, conn: Connection, shape: Shape) -> None:
        table = q(shape.entity.table.name)
        key = shape.entity.natural_key
        names = [c.name for c in shape.cols if shape.carries(c.name)]
        own = list(shape.written)
        shown = [n for n in names if not shape.col(n).bookkeeping]
        cols = ", ".join(f"x.{q(n)}" for n in names)
        olds = ", ".join(f"t.{q(c.target)}" for c in own) or "NULL"
        deleting = any(c.target == "deleted_at" for c in own)
        result = conn.exec_driver_sql(
            f"SELECT x.pos, x.st, {cols}, {olds} FROM {shape.resolved} x "
            f"LEFT JOIN {table} t ON t.id = x.tid ORDER BY x.pos",
            execution_options={"stream_results": True, "yield_per": BATCH},
        )
        n = len(names)
        for row in result:
            pos, st = row[0], row[1]
            rec = dict(zip(names, row[2 : 2 + n], strict=True))
            line: dict[str, Any] = {
                "entity": shape.name,
                "key": "/".join(text_of(rec[k]) for k in key),
                "position": int(pos),
            }
            if st == "create":
                line["action"] = "create"
                line["fields"] = {f: text_of(rec[f]) for f in shown}
            elif st == "update":
                old = row[2 + n :]
                changes = [
                    {"field": c.name, "before": text_of(o), "after": text_of(rec[c.name])}
                    for c, o in zip(own, old, strict=True)
                    if text_of(o) != text_of(rec[c.name])
                ]
                gone = deleting and any(
                    ch["field"] == "deleted_at" and not ch["before"] and ch["after"]
                    for ch in changes
                )
                line["action"] = "delete" if gone else "update"
                line["changes"] = changes
            else:
                line["action"] = ACTIONS.get(st, "error")
            self._line(line)

    def deletions(self, conn: Connection, ds: Dataset, shape: Shape, statuses: str) -> None:
        """A replace's soft-deletes of the entity: live rows of its scope the bundle lacks
        (call right before they are soft-deleted)."""
        table = q(shape.entity.table.name)
        keys = ", ".join(f"k.{q(n)}" for n in shape.entity.natural_key)
        result = conn.exec_driver_sql(
            f"SELECT {keys} FROM ({key_lookup(ds, shape.entity)}) k JOIN {table} t "
            f"ON t.id = k.id WHERE k.id IN (SELECT id FROM {shape.scope}) "
            f"AND t.deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM {statuses} x "
            "WHERE x.tid = k.id) ORDER BY k.id",
            execution_options={"stream_results": True, "yield_per": BATCH},
        )
        for row in result:
            self._line(
                {
                    "entity": shape.name,
                    "key": "/".join(text_of(v) for v in row),
                    "position": None,
                    "action": "delete",
                }
            )


def _json(expr: str) -> str:
    """SQL: a text expression as a JSON string literal (what json.dumps writes)."""
    return f"to_json({expr})::text"


def _pg_text(expr: str, col: Col) -> str:
    """SQL: the value of `expr` (of col's kind) as text_of shows it in Python, never NULL:
    dates ISO, instants as datetime.isoformat (microseconds only when not zero, the
    session's offset as +HH:MM), floats as Python's str (an integral one ends in .0)."""
    if col.ddl.lower() == "text" or col.kind is Kind.STR:
        return f"coalesce(({expr})::text, '')"
    if col.kind is Kind.INT:
        return f"coalesce(({expr})::text, '')"
    if col.kind is Kind.DATE:  # (DateStyle ISO: the driver reads dates only in it)
        return f"coalesce(({expr})::text, '')"
    if col.kind is Kind.TIMESTAMP:
        return (
            f"coalesce(to_char({expr}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN "
            f"date_trunc('second', {expr}) <> {expr} THEN to_char({expr}, '.US') ELSE '' END "
            f"|| to_char({expr}, 'TZH:TZM'), '')"
        )
    # FLOAT (float8): Python's repr. PostgreSQL's shortest text is the same digits; it
    # leaves off ".0" of an integral value, and writes 1e+15..1e+16 in exponent form.
    return (
        f"coalesce(CASE WHEN ({expr}) = trunc({expr}) AND abs({expr}) < 1e16 THEN "
        f"CASE WHEN ({expr}) = 0 AND left(({expr})::text, 1) = '-' THEN '-0.0' "
        f"ELSE trunc({expr})::numeric::text || '.0' END ELSE ({expr})::text END, '')"
    )


def line_sql(shape: Shape, row: str, status: str) -> str:
    """SQL: the plan line of one resolved record, what _py_entity writes for it: `row` is
    the alias that holds the record's staged columns, pos and tid, `status` its status (an
    expression). The old row is probed by id, for the records to update only."""
    table = q(shape.entity.table.name)
    key = shape.entity.natural_key
    names = [c.name for c in shape.cols if shape.carries(c.name)]
    shown = [shape.col(n) for n in names if not shape.col(n).bookkeeping]
    own = list(shape.written)

    def x(c: Col) -> str:
        return _pg_text(f"{row}.{q(c.name)}", c)

    def t(c: Col) -> str:
        return _pg_text(f"t.{q(c.target)}", c)

    entity = json_text(shape.name)
    key_text = " || '/' || ".join(x(shape.col(k)) for k in key) or "''"
    head = f'\'{{"entity":{entity},"key":\' || {_json(key_text)} || \',"position":\' || {row}.pos'
    fields = " || ',' || ".join(f"'{json_text(c.name)}:' || {_json(x(c))}" for c in shown)
    fields = fields or "''"
    create = f'\',"action":"create","fields":{{\' || {fields} || \'}}}}\''
    changes = ", ".join(
        f'CASE WHEN {t(c)} <> {x(c)} THEN \',{{"field":{json_text(c.name)},"before":\' || '
        f"{_json(t(c))} || ',\"after\":' || {_json(x(c))} || '}}' ELSE '' END"
        for c in own
    )
    changes = changes or "''"
    gone = next((c for c in own if c.target == "deleted_at"), None)
    deleting = f"{t(gone)} = '' AND {x(gone)} <> ''" if gone is not None else "false"
    update = (
        f"(SELECT ',\"action\":' || CASE WHEN {deleting} THEN '\"delete\"' ELSE '\"update\"' "
        f"END || ',\"changes\":[' || ltrim(concat({changes}), ',') || ']}}' "
        f"FROM {table} t WHERE t.id = {row}.tid)"
    )
    plain = " ".join(
        f"WHEN '{st}' THEN ',\"action\":\"{a}\"}}'" for st, a in ACTIONS.items() if st != "create"
    )
    return (
        f"{head} || CASE {status} WHEN 'create' THEN {create} WHEN 'update' THEN {update} "
        f'{plain} ELSE \',"action":"error"}}\' END'
    )


def _pg_lines(shape: Shape) -> str:
    """SQL: the entity's plan lines, in position order, composed from its resolved rows
    (when resolve did not compose them, or the three-way merge changed some since)."""
    return f"SELECT {line_sql(shape, 'x', 'x.st')} FROM {shape.resolved} x ORDER BY x.pos"


def json_text(text: str) -> str:
    """A name as a JSON string inside an SQL literal (names are identifiers: no quote)."""
    return json.dumps(text, ensure_ascii=False).replace("'", "''")


def plan_key(import_id: str) -> str:
    """The storage key of import `import_id`'s file of every record (written by the import
    service, read by DownloadPlan, removed by ferry.merge.cleanup with its plan)."""
    return f"plan-{import_id}.jsonl"
