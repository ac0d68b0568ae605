"""The `sql` bundle format: a PostgreSQL script that restores the bundle into any migrated
Ferry database with `psql -f FILE` (export-only: Ferry does not read it back).

The script is one transaction (`\\set ON_ERROR_STOP on`, BEGIN ... COMMIT: it applies
whole or not at all). Per entity, in the bundle's dependency order, its records go into a
temporary table of bundle fields, and one INSERT ... SELECT resolves every parent by
natural key (no database id is in the script) and upserts on the table's natural-key
constraint (ON CONFLICT ... DO UPDATE), in bundle order, so running it twice gives the
same rows. Optional self-links (prerequisite, mentor) are set at the end, once every row
exists. A missing required parent fails the script (NOT NULL) and nothing is changed.

Unlike a Ferry import, the script keeps no undo log and no import record: it is for
restoring a database directly, as pg_restore is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from typing import IO, Any

from ferry.bundle.formats.base import Batch, BundleLimits, Event, RawBatch, Trailer
from ferry.bundle.formats.common import Encoder, schema
from ferry.datasets import load_dataset
from ferry.datasets.query import Column, key_constraint, key_lookup, q
from ferry.datasets.spec import Dataset, Entity, Kind
from ferry.errors import InvalidArgument

ROWS_PER_INSERT = 500
# The school the script restores into: the session's `ferry.school` (`SET ferry.school
# = '<id>'` before running it), else the default school, as the tables' school_id default
# (migration 0013) fills the rows it inserts.
SCHOOL = "COALESCE(NULLIF(current_setting('ferry.school', true), '')::bigint, 1)"
_TYPES = {
    Kind.STR: "text",
    Kind.INT: "bigint",
    Kind.FLOAT: "double precision",
    Kind.DATE: "date",
    Kind.TIMESTAMP: "timestamptz",
}


def literal(value: Any, kind: Kind) -> str:
    """`value` as a PostgreSQL literal (standard_conforming_strings: '' escapes ')."""
    if value is None:
        return "NULL"
    if kind is Kind.STR:
        return "'" + str(value).replace("'", "''") + "'"
    if kind is Kind.INT:
        return str(int(value))
    if kind is Kind.FLOAT:
        return repr(float(value))  # shortest text that reads back as the same double
    if kind is Kind.DATE:
        text = value if isinstance(value, str) else value.isoformat()
        return f"'{text}'"
    if isinstance(value, dt.datetime):
        when = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return f"'{when.astimezone(dt.UTC).isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"  # RFC 3339 text (raw batches)


class _Entity:
    """The script's statements for one entity, derived from the dataset spec."""

    def __init__(self, ds: Dataset, entity: Entity, columns: list[Column]) -> None:
        self.ds, self.entity, self.columns = ds, entity, columns
        self.stage = f"ferry_restore_{entity.name}"

    def create(self) -> str:
        cols = ", ".join(f"{q(c.name)} {_TYPES[c.kind]}" for c in self.columns)
        return f"CREATE TEMP TABLE {self.stage} (pos bigint, {cols}) ON COMMIT DROP;\n"

    def insert(self, records: list[dict[str, Any]], first: int) -> str:
        names = ", ".join(["pos", *(q(c.name) for c in self.columns)])
        rows = ",\n".join(
            "("
            + ", ".join([str(first + i), *(literal(r.get(c.name), c.kind) for c in self.columns)])
            + ")"
            for i, r in enumerate(records)
        )
        return f"INSERT INTO {self.stage} ({names}) VALUES\n{rows};\n"

    def merge(self) -> str:
        """Upsert the staged records, parents resolved by natural key (late links later)."""
        e, ds = self.entity, self.ds
        table = q(e.table.name)
        targets, values, joins = [], [], []
        for f in e.fields:
            targets.append(q(f.column_name))
            values.append(f"s.{q(f.name)}")
        conflict: list[str] = [f.column_name for f in e.fields if f.name in e.natural_key]
        for i, ref in enumerate(e.references):
            if set(ref.fields) & set(e.natural_key):
                conflict.append(ref.column)
            if ds.is_late(e.name, ref):
                continue
            parent = ds.entity(ref.parent)
            on = " AND ".join(
                f"p{i}.{q(theirs)} = s.{q(own)}"
                for own, theirs in zip(ref.fields, parent.natural_key, strict=True)
            )
            joins.append(f"LEFT JOIN ({key_lookup(ds, parent, school=SCHOOL)}) p{i} ON {on}")
            targets.append(q(ref.column))
            values.append(f"p{i}.id")
        conflict = [q(c) for c in key_constraint(e, conflict)]
        updates = ", ".join(f"{t} = EXCLUDED.{t}" for t in targets if t not in conflict)
        return (
            f"INSERT INTO {table} ({', '.join(targets)})\n"
            f"SELECT {', '.join(values)} FROM {self.stage} s {' '.join(joins)}\n"
            f"ORDER BY s.pos\n"
            f"ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {updates};\n"
        )

    def late(self) -> str:
        """Set the late-bound (optional) links, now that every row exists."""
        e, ds = self.entity, self.ds
        table = q(e.table.name)
        out = []
        mine = " AND ".join(f"k.{q(k)} = s.{q(k)}" for k in e.natural_key)
        for ref in e.references:
            if not ds.is_late(e.name, ref):
                continue
            parent = ds.entity(ref.parent)
            on = " AND ".join(
                f"p.{q(theirs)} = s.{q(own)}"
                for own, theirs in zip(ref.fields, parent.natural_key, strict=True)
            )
            out.append(
                f"UPDATE {table} SET {q(ref.column)} = y.pid FROM (SELECT k.id AS id, "
                f"p.id AS pid FROM {self.stage} s "
                f"JOIN ({key_lookup(ds, e, school=SCHOOL)}) k ON {mine} "
                f"LEFT JOIN ({key_lookup(ds, parent, school=SCHOOL)}) p ON {on}) y "
                f"WHERE {table}.id = y.id AND {table}.{q(ref.column)} IS DISTINCT FROM y.pid;\n"
            )
        return "".join(out)


class SqlBundle:
    """The `sql` bundle format (export-only)."""

    name = "sql"
    extension = "sql"
    content_type = "application/sql"

    def __init__(self, app: object = None) -> None:
        """Built as `factory(app)`; it takes no settings from the app."""

    def write(self, events: Iterable[Event], out: IO[bytes]) -> None:
        enc = Encoder()
        stream = iter(events)
        header = enc.start(next(stream, None))  # type: ignore[arg-type]
        ds = load_dataset(header.metadata.dataset or "school", field="metadata.dataset")
        fields = schema(ds.name)
        m = header.metadata
        what = f"scope {m.scope}" if m.scope else f"semester {m.semester}"
        out.write(
            (
                f"-- Ferry bundle of dataset {ds.name}, {what}, exported "
                f"{m.exported_at.ToDatetime(dt.UTC).isoformat()} by {m.exported_by or '-'}.\n"
                "-- Restore: psql -v ON_ERROR_STOP=1 -f FILE (one transaction; idempotent).\n"
                "\\set ON_ERROR_STOP on\nBEGIN;\nSET LOCAL TIME ZONE 'UTC';\n"
            ).encode()
        )
        seen: list[_Entity] = []
        current: _Entity | None = None
        position = 0
        for event in stream:
            if isinstance(event, Trailer):
                break
            batch = Batch(event.entity, event.records()) if isinstance(event, RawBatch) else event
            if not isinstance(batch, Batch):
                raise InvalidArgument("a bundle has one Header", field="events")
            enc.batch(batch)
            if current is None or current.entity.name != batch.entity:
                if current is not None:
                    out.write(current.merge().encode())
                current = _Entity(ds, ds.entity(batch.entity), list(fields[batch.entity].values()))
                seen.append(current)
                position = 0
                out.write(current.create().encode())
            for i in range(0, len(batch.records), ROWS_PER_INSERT):
                chunk = batch.records[i : i + ROWS_PER_INSERT]
                out.write(current.insert(chunk, position + 1).encode())
                position += len(chunk)
        if current is not None:
            out.write(current.merge().encode())
        for e in seen:
            out.write(e.late().encode())
        out.write(b"COMMIT;\n")

    def read(self, src: IO[bytes], limits: BundleLimits) -> Iterator[Event]:
        """Refused: a script is restored with psql, not imported."""
        raise InvalidArgument(
            "the sql bundle format is export-only: restore a .sql bundle with "
            "`psql -v ON_ERROR_STOP=1 -f FILE` into a migrated Ferry database, or import "
            "a json, jsonl, xlsx or tar.gz bundle",
            field="options.bundle_format",
        )
