"""Streaming records into per-entity staging tables (TEMP on SQLite; UNLOGGED tables on
PostgreSQL, filled on a connection of their own: see ferry.merge.pipeline).

PostgreSQL gets binary COPY FROM STDIN through psycopg: of the converted records, or of
the records of a raw run (RawBatch) as the reader's check decoded them (typed already:
nothing to convert, nothing for PostgreSQL to parse); a raw run without them goes as one
json_populate_recordset. SQLite gets executemany. Records are checked and converted in
Python on the way (ferry.merge.values); a refused record is staged with ok=0 and only its
key, so it still protects its database row from a replace. Memory stays flat: one batch
at a time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.bundle.formats.base import FieldRule, FieldRules, RawBatch
from ferry.datasets.spec import Dataset, Kind
from ferry.errors import InvalidArgument
from ferry.merge.model import MAX_LISTED_ERRORS, RecordError
from ferry.merge.shape import Shape, build_shapes, q
from ferry.merge.values import BadValue, record_converter

RejectSink = Callable[[str, list[tuple[int, dict[str, Any]]]], None]


@dataclass
class EntityStage:
    """Staging progress of one entity."""

    shape: Shape
    staged: int = 0  # records seen (also the last position)
    refused: int = 0  # records refused in Python
    errors: list[RecordError] = field(default_factory=list)  # the first few
    # The fields the entity's records carry: those of its first record (a csv's header).
    # None until the first record; see Stager.stage.
    carried: frozenset[str] | None = None


def create_tables(conn: Connection, shapes: Iterable[Shape], sqlite: bool) -> None:
    """(Re)create an empty staging table for each shape."""
    for shape in shapes:
        cols = ", ".join(f"{q(c.name)} {c.ddl}" for c in shape.cols)
        if sqlite:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{shape.stage}")
            conn.exec_driver_sql(
                f"CREATE TEMP TABLE {shape.stage} (pos INTEGER, ok INTEGER, {cols})"
            )
        else:  # see ferry.merge.pipeline
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {shape.stage}")
            conn.exec_driver_sql(
                f"CREATE UNLOGGED TABLE {shape.stage} (pos INTEGER, ok SMALLINT, {cols})"
            )


def drop_tables(conn: Connection, names: Iterable[str]) -> None:
    """Drop SQLite temp tables (they would outlive the transaction on a pooled connection)."""
    for name in names:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")


class Stager:
    """Converts and writes batches of records into the staging tables."""

    def __init__(self, conn: Connection, shapes: dict[str, Shape], sqlite: bool) -> None:
        self._conn = conn
        self._sqlite = sqlite
        self._shapes = shapes
        self.entities: dict[str, EntityStage] = {}
        self._allowed = {name: frozenset(c.name for c in s.cols) for name, s in shapes.items()}
        self._convert: dict[str, Callable[[dict[str, Any], int], tuple[Any, ...]]] = {}
        self._copy_plans: dict[tuple[str, type], _CopyPlan] = {}

    def _carry(self, st: EntityStage, first: dict[str, Any], pos: int) -> frozenset[str]:
        """Fix the fields the entity carries from its first record (every later record
        may carry no other), and build its converter. A file that lacks a field of the
        natural key or of a required link cannot name its records: InvalidArgument."""
        shape = st.shape
        allowed = self._allowed[shape.name]
        if not first.keys() <= allowed:
            unknown = sorted(set(first) - allowed)
            raise InvalidArgument(
                f"{shape.name} record {pos}: unknown field(s) {', '.join(unknown)}",
                field=f"{shape.name}.{unknown[0]}",
            )
        carried = frozenset(first)
        needed = list(shape.entity.natural_key)
        needed += [f for r in shape.refs if not r.ref.nullable for f in r.ref.fields]
        lacking = [f for f in dict.fromkeys(needed) if f not in carried]
        if lacking:
            raise InvalidArgument(
                f"{shape.name} records must carry {', '.join(lacking)} (their natural key "
                "and required links name them); the file has no such field",
                field=f"{shape.name}.{lacking[0]}",
            )
        st.carried = carried
        self._convert[shape.name] = record_converter(
            [
                (c.name, c.kind, c.convert, c.length, c.bounds, c.copy_type == "text", c.range)
                for c in shape.cols
            ],
            self._sqlite,
            None if carried == allowed else carried,
        )
        return carried

    def stage(self, entity: str, records: list[dict[str, Any]], rejects: RejectSink | None) -> None:
        """Check, convert and stage one batch of `entity`; refused records are counted,
        listed (the first few) and passed to `rejects`."""
        shape = self._shapes.get(entity)
        if shape is None:
            raise InvalidArgument(
                f"unknown entity {entity!r}; known: {', '.join(self._shapes)}", field="entity"
            )
        st = self.entities.setdefault(entity, EntityStage(shape))
        if not records:
            return
        carried = st.carried
        if carried is None:
            carried = self._carry(st, records[0], st.staged + 1)
        allowed = self._allowed[entity]
        convert = self._convert[entity]
        rows: list[tuple[Any, ...]] = []
        refused: list[tuple[int, dict[str, Any]]] = []
        pos = st.staged
        for rec in records:
            pos += 1
            if not rec.keys() <= carried:
                unknown = sorted(set(rec) - allowed)
                if unknown:
                    raise InvalidArgument(
                        f"{entity} record {pos}: unknown field(s) {', '.join(unknown)}",
                        field=f"{entity}.{unknown[0]}",
                    )
                extra = sorted(set(rec) - carried)
                raise InvalidArgument(
                    f"{entity} record {pos} carries {', '.join(extra)}, which the first "
                    f"{entity} record lacks: every record of an entity carries the same "
                    "fields (a field absent from all of them is left as it is)",
                    field=f"{entity}.{extra[0]}",
                )
            try:
                rows.append(convert(rec, pos))
            except BadValue:
                rows.append(self._refuse(st, pos, rec))
                refused.append((pos, rec))
        st.staged = pos
        self._write(shape, rows)
        if refused and rejects is not None:
            rejects(entity, refused)

    def stage_raw(self, batch: RawBatch, rejects: RejectSink | None) -> None:
        """Stage records that are still JSON (checked by the reader against this shape's
        FieldRules). PostgreSQL parses the JSON itself, one statement per run of records:
        no Python object per record. SQLite gets them decoded the usual way."""
        if self._sqlite or batch.entity not in self._shapes:
            self.stage(batch.entity, batch.records(), rejects)
            return
        shape = self._shapes[batch.entity]
        st = self.entities.setdefault(batch.entity, EntityStage(shape))
        # A raw run carries every field (the reader's check encodes each one back).
        every = self._allowed[batch.entity]
        if st.carried is None:
            st.carried = every
        elif st.carried != every:
            extra = sorted(every - st.carried)
            raise InvalidArgument(
                f"{batch.entity} record {st.staged + 1} carries {', '.join(extra)}, which the "
                f"first {batch.entity} record lacks: every record of an entity carries the "
                "same fields",
                field=f"{batch.entity}.{extra[0]}",
            )
        if batch.rows is not None and self._copy_rows(shape, st, batch.rows):
            return
        names = [q(c.name) for c in shape.cols]
        self._conn.exec_driver_sql(
            f"INSERT INTO {shape.stage} (pos, ok, {', '.join(names)}) "
            f"SELECT {st.staged} + o.ordinality, 1, {', '.join(f'o.{n}' for n in names)} "
            f"FROM json_populate_recordset(NULL::{shape.stage}, %(body)s::json) "
            "WITH ORDINALITY o",
            {"body": (b"[" + batch.body + b"]").decode()},
        )
        st.staged += batch.count

    def _copy_rows(self, shape: Shape, st: EntityStage, rows: list[Any]) -> bool:
        """Binary COPY of a raw run's records as the reader's check decoded them
        (RawBatch.rows): typed already, so PostgreSQL parses nothing (its JSON parse took
        a third of a 1M-record import's database time). False, having staged nothing,
        when the structs' fields are not exactly the staged columns."""
        if not rows:
            return True
        plan = self._copy_plans.get((shape.name, type(rows[0])))
        if plan is None:
            plan = _copy_plan(shape, tuple(type(rows[0]).__struct_fields__))
            self._copy_plans[(shape.name, type(rows[0]))] = plan
        if not plan.sql:
            return False
        raw = self._conn.connection.driver_connection
        astuple = msgspec.structs.astuple
        pos = st.staged
        with raw.cursor() as cur, cur.copy(plan.sql) as copy:  # type: ignore[union-attr]
            copy.set_types(plan.types)
            write = copy.write_row
            for rec in rows:
                pos += 1
                write((pos, 1, *astuple(rec)))
        st.staged = pos
        return True

    def _refuse(self, st: EntityStage, pos: int, rec: dict[str, Any]) -> tuple[Any, ...]:
        """Note the first bad field of `rec`; the staged row keeps only the key values
        that are themselves valid."""
        shape = st.shape
        st.refused += 1
        values: list[Any] = []
        blamed = False
        keys = set(shape.entity.natural_key)
        for c in shape.cols:
            if st.carried is not None and c.name not in st.carried:
                values.append(None)  # not carried: never checked, never written
                continue
            try:
                value = c.convert(rec.get(c.name))
            except BadValue as exc:
                value = None
                if not blamed:
                    blamed = True
                    if len(st.errors) < MAX_LISTED_ERRORS:
                        st.errors.append(
                            RecordError(
                                shape.name,
                                display_key(shape, rec),
                                c.name,
                                exc.reason,
                                pos,
                                exc.code,
                                exc.details,
                            )
                        )
            values.append(value if c.name in keys else None)
        return (pos, 0, *values)

    def _write(self, shape: Shape, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        names = ", ".join(["pos", "ok", *(q(c.name) for c in shape.cols)])
        if self._sqlite:
            marks = ", ".join("?" * (len(shape.cols) + 2))
            raw = self._conn.connection.driver_connection
            raw.executemany(f"INSERT INTO temp.{shape.stage} ({names}) VALUES ({marks})", rows)  # type: ignore[union-attr]
            return
        raw = self._conn.connection.driver_connection
        # Binary COPY: psycopg's C dumpers are several times faster than text for
        # timestamps and dates.
        sql = f"COPY {shape.stage} ({names}) FROM STDIN (FORMAT BINARY)"
        with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
            copy.set_types(["int4", "int2", *(c.copy_type for c in shape.cols)])
            for row in rows:
                copy.write_row(row)


@dataclass(frozen=True)
class _CopyPlan:
    """How a raw run's structs are COPYed: the statement ("" when they cannot be) and the
    binary types of (pos, ok, fields...)."""

    sql: str
    types: list[str]


# The values a struct holds per kind, and the binary COPY type that takes them as they are.
_TAKES = {
    Kind.STR: {"text"},
    Kind.INT: {"int4", "int8"},
    Kind.FLOAT: {"float8"},
    Kind.DATE: {"date"},
    Kind.TIMESTAMP: {"timestamptz"},
}


def _copy_plan(shape: Shape, fields: tuple[str, ...]) -> _CopyPlan:
    """The COPY of structs with `fields` (in that order) into the shape's staging table:
    every staged column, and nothing else, must be among them, staged as a type that
    takes the struct's value as it is."""
    cols = {c.name: c for c in shape.cols}
    if (
        set(fields) != set(cols)
        or len(fields) != len(cols)
        or any(c.copy_type not in _TAKES[c.kind] for c in cols.values())
    ):
        return _CopyPlan("", [])
    names = ", ".join(["pos", "ok", *(q(f) for f in fields)])
    return _CopyPlan(
        f"COPY {shape.stage} ({names}) FROM STDIN (FORMAT BINARY)",
        ["int4", "int2", *(cols[f].copy_type for f in fields)],
    )


def display_key(shape: Shape, rec: dict[str, Any]) -> str:
    """A record's natural key for people: the key values joined by "/"."""
    return "/".join(_text(rec.get(k)) for k in shape.entity.natural_key)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def field_rules(ds: Dataset, dialect: sa.Dialect) -> FieldRules:
    """What the json reader may pass on unparsed (RawBatch) into `ds`: values
    staging would take as they are (text within its column, integers and floats within
    the spec's range). Dates are checked against theirs in SQL (ferry.merge.plan)."""
    shapes = build_shapes(ds, dialect).values()
    return {
        s.name: {
            c.name: FieldRule(
                c.kind,
                c.nullable,
                c.length if c.kind is Kind.STR else None,
                c.bounds if c.kind is Kind.INT else None,
                c.range if c.kind is Kind.FLOAT else None,
            )
            for c in s.cols
        }
        for s in shapes
    }
