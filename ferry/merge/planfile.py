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
"""

from __future__ import annotations

import json
from typing import IO, Any

from sqlalchemy.engine import Connection

from ferry.datasets.spec import Dataset
from ferry.merge.model import RecordChange
from ferry.merge.shape import Shape, key_lookup, q, text_of

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

    def entity(self, conn: Connection, shape: Shape) -> None:
        """The decision for each of the entity's records (after resolve and the three-way
        merge, before the entity is applied)."""
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
