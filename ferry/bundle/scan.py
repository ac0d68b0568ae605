"""One read of a semester's bundle from the database, shared by every bundle producer.

A scan opens one read-only snapshot, checks the request, counts what is in scope, and
hands out a server-side cursor per entity in dependency order. StreamSession (typed
chunks) and the bundle file formats (events) both read through it, so they always agree
on what a bundle of a semester holds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import psycopg
import sqlalchemy as sa
from psycopg import postgres
from psycopg.pq import Format
from sqlalchemy.engine import Connection, CursorResult, Engine

from ferry.datasets.query import Column, count_in_scope, export_query
from ferry.datasets.spec import Dataset, Entity, Kind
from ferry.db import tenant
from ferry.errors import InvalidArgument, NotFound

# Bumped when a bundle's meaning changes; readers upgrade older versions
# (ferry.bundle.formats.common.UPGRADES) and refuse newer ones. 2: the metadata may name
# the school the bundle is of (`school`, docs/tenants.md), which a reader of version 1
# refused as an unknown field; a version 1 bundle names none and reads as before.
FORMAT_VERSION = 2
MAX_BATCH_RECORDS = 10_000
SCOPE_ALL = "all"
# Every record of the acting school ("all" is its older name: under tenancy a service
# only ever sees one school, docs/tenants.md).
SCOPE_SCHOOL = "school"
SCOPES = ("semester", SCOPE_SCHOOL, SCOPE_ALL)
# PostgreSQL's binary format counts instants from here (Scan.binary_rows).
BINARY_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class SessionRequest:
    semester: str
    include_deleted: bool = False
    batch_size: int = 2000
    exported_by: str = ""
    # A delta bundle: only records updated or deleted at or after this instant. Deleted
    # records are included so the receiver can apply the deletions.
    updated_since: dt.datetime | None = None
    # "semester" (the one named) or "all": every record of the dataset, those in no
    # semester too (a whole-database backup; `semester` is then empty).
    scope: str = "semester"
    # Hold the dataset's tables (PostgreSQL ACCESS SHARE) from the snapshot on: a backup
    # read beside an import then makes that import's bulk load (ACCESS EXCLUSIVE) wait
    # for it, instead of the backup waiting for an import that waits for the backup.
    hold_tables: bool = False

    @property
    def whole(self) -> bool:
        return self.scope in (SCOPE_ALL, SCOPE_SCHOOL)

    @property
    def value(self) -> str | None:
        """The scope value for ferry.datasets.query: None for the whole dataset."""
        return None if self.whole else self.semester

    @property
    def with_deleted(self) -> bool:
        """Whether soft-deleted rows are read (always for a delta bundle)."""
        return self.include_deleted or self.updated_since is not None


def snapshot(engine: Engine) -> Connection:
    """A connection whose reads all see one consistent snapshot of the database."""
    if engine.dialect.name == "postgresql":
        conn = engine.connect().execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        )
        conn.begin()
        # Every row will be read: plan for the whole result, not for the first 10%.
        conn.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        # Instants arrive as UTC datetimes, the bundle's form: no conversion per value.
        conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
        # Dates read as text (Scan.rows) are then YYYY-MM-DD, the bundle's form.
        conn.exec_driver_sql("SET LOCAL DateStyle = 'ISO'")
        return conn
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")  # pysqlite would not open a read transaction itself
    return conn


def semester_exists(conn: Connection, ds: Dataset, value: str) -> bool:
    """True when any row of the dataset's scope-root entity carries `value` (deleted too)."""
    root = ds.scope_root()
    column = next(r.column for r in root.scope if r.column)
    t = root.table
    mine = t.c.school_id == tenant.school_id()  # the application scope (the first wall)
    return (
        conn.execute(sa.select(sa.literal(1)).where(t.c[column] == value, mine).limit(1)).first()
        is not None
    )


def school_code(conn: Connection) -> str:
    """The code of the school the work acts for (a bundle's BundleMetadata.school)."""
    return str(
        conn.execute(
            sa.text("SELECT code FROM schools WHERE id = :s"), {"s": tenant.school_id()}
        ).scalar_one()
    )


@dataclass
class Scan:
    """An open snapshot of one semester: counts per entity and a cursor per entity."""

    conn: Connection
    ds: Dataset
    req: SessionRequest
    entities: list[Entity]
    counts: dict[str, int]
    # The database's own value for `updated_since` (SQLite stores naive UTC).
    since: dt.datetime | None
    # The code of the school read (BundleMetadata.school).
    school: str = ""

    @property
    def postgres(self) -> bool:
        """Whether rows come in the database's forms of `rows`: on PostgreSQL dates are
        "YYYY-MM-DD" strings, and with `micros` instants are microseconds since the epoch."""
        return bool(self.conn.dialect.name == "postgresql")

    def rows(self, entity: Entity, micros: bool = False) -> tuple[list[Column], CursorResult[Any]]:
        """The entity's columns and a server-side cursor over its rows in scope (close it).

        On PostgreSQL the database writes dates as the bundle's text (DateStyle ISO) and,
        with `micros`, instants as whole microseconds since 1970 (an int8): psycopg then
        loads a str or an int instead of building a date or datetime that the caller
        would take apart again (issue 27: StreamSession and DownloadSession spent about a
        third of their CPU per record on those values). Other databases return the
        driver's values."""
        query, columns = self._query(entity)
        if self.postgres:
            query = _wire_forms(query, columns, micros)
        result = self.conn.execution_options(
            stream_results=True, yield_per=self.req.batch_size
        ).execute(query)
        return columns, result

    def binary_rows(self, entity: Entity) -> tuple[list[Column], Any]:
        """PostgreSQL only: the entity's columns and a psycopg server-side cursor over its
        rows in scope (close it), read in PostgreSQL's binary format, with instants loaded
        as PostgreSQL holds them, int8 microseconds since 2000-01-01 UTC (BINARY_EPOCH):
        PostgreSQL then sends eight bytes where it would format a number, and psycopg
        reads an int where it would parse text (issue 27: the database's CPU per
        StreamSession fell by a seventh, psycopg's fetch by a third). Dates are text,
        as in `rows`; strings, integers and doubles are the same values either way."""
        query, columns = self._query(entity)
        compiled = _wire_forms(query, columns, False).compile(
            dialect=self.conn.dialect, compile_kwargs={"render_postcompile": True}
        )
        raw = cast(psycopg.Connection[Any], self.conn.connection.driver_connection)
        cursor = raw.cursor(f"ferry_scan_{entity.name}", binary=True)
        int8 = raw.adapters.get_loader(postgres.types["int8"].oid, Format.BINARY)
        if int8 is None:  # psycopg always has one; say so rather than read datetimes
            raise RuntimeError("psycopg has no binary int8 loader")
        for instant in ("timestamptz", "timestamp"):
            cursor.adapters.register_loader(instant, int8)
        cursor.execute(compiled.string, compiled.params)
        return columns, cursor

    def query(self, entity: Entity) -> tuple[sa.Select[Any], list[Column]]:
        """The entity's export query as `rows` runs it (scope, school, `updated_since`),
        values in the driver's forms, and its columns (ferry.bundle.pgjson builds on it)."""
        return self._query(entity)

    def _query(self, entity: Entity) -> tuple[sa.Select[Any], list[Column]]:
        query, columns = export_query(self.ds, entity, self.req.value, self.req.with_deleted)
        # The application scope: the school's rows only, whatever role reads (the export
        # query's table is `t`; its parents are joined by id, so of the same school).
        query = query.where(sa.text(tenant.scope_sql("t")))
        if self.since is not None:
            # The labels of the export query render as their columns in WHERE.
            c = query.selected_columns
            changed = [c.updated_at >= self.since, c.deleted_at >= self.since]
            # A record that carries a key renamed since is written differently now (its
            # student_id is the new one), though its own row did not change: a receiver
            # that knows no renames (a OneRoster system) needs it again under the new key.
            for name, origin in key_fields(self.ds, entity).items():
                renamed = sa.select(_RENAMES.c.new_key).where(
                    _RENAMES.c.entity == origin,
                    _RENAMES.c.renamed_at >= self.since,
                    _RENAMES.c.school_id == tenant.school_id(),
                )
                changed.append(c[name].in_(renamed))
            query = query.where(sa.or_(*changed))
        return query, columns

    def _count(self, entity: Entity) -> int:
        if self.since is None:
            query = count_in_scope(self.ds, entity, self.req.value, self.req.with_deleted)
            query = query.where(sa.text(tenant.scope_sql("t")))
        else:
            rows = self._query(entity)[0].order_by(None).subquery()
            query = sa.select(sa.func.count()).select_from(rows)
        return int(self.conn.execute(query).scalar_one())


def _wire_forms(query: sa.Select[Any], columns: list[Column], micros: bool) -> sa.Select[Any]:
    """`query` with its DATE columns cast to text and (`micros`) its TIMESTAMP columns
    as int8 microseconds since the epoch (PostgreSQL; extract(epoch) is exact numeric)."""
    exprs: list[sa.ColumnElement[Any]] = []
    for col, sel in zip(columns, query.selected_columns, strict=True):
        inner = getattr(sel, "element", sel)
        if col.kind is Kind.DATE:
            exprs.append(sa.cast(inner, sa.Text).label(col.name))
        elif col.kind is Kind.TIMESTAMP and micros:
            epoch = sa.extract("epoch", inner) * sa.literal_column("1000000")
            exprs.append(sa.cast(epoch, sa.BigInteger).label(col.name))
        else:
            exprs.append(sel)
    out: sa.Select[Any] = query.with_only_columns(*exprs, maintain_column_froms=False)
    return out


def _nothing(n: int) -> Sequence[Any]:
    return ()


def fetcher(result: CursorResult[Any]) -> Callable[[int], Sequence[Any]]:
    """`result.fetchmany`, or after its first call the database driver's own, when
    SQLAlchemy has nothing to convert in the rows (no result processor on any column, as
    on PostgreSQL with psycopg, whose values are already the Python types): the rows are
    then psycopg's tuples, not SQLAlchemy Rows made from them. That was 1.1 of the 2.6 us
    of CPU per record the fetch cost (issue 27, bench dataset); the row writers only
    index them. The first call goes through SQLAlchemy, which holds the one row it read
    ahead of a server-side cursor (to learn its columns) and hands it over there.
    """
    processors = getattr(getattr(result, "_metadata", None), "_processors", None)
    cursor = getattr(result, "cursor", None)
    if processors is None or any(processors) or cursor is None:
        return result.fetchmany
    state: dict[str, Callable[[int], Sequence[Any]]] = {"fetch": result.fetchmany}

    def fetchmany(n: int) -> Sequence[Any]:
        rows = state["fetch"](n)
        # SQLAlchemy's look-ahead row is handed over. When that first call found no more
        # rows behind it (an entity of one row), SQLAlchemy has closed the cursor: done.
        state["fetch"] = _nothing if cursor.closed else cursor.fetchmany
        return rows

    return fetchmany


_RENAMES = sa.table(
    "key_renames",
    sa.column("entity", sa.String),
    sa.column("new_key", sa.String),
    sa.column("renamed_at", sa.DateTime(timezone=True)),
    sa.column("school_id", sa.BigInteger),
)


def key_origin(ds: Dataset, entity: str, field: str) -> str:
    """The entity whose natural key `field` of `entity` carries ("" when none): grades'
    student_id -> the enrollment's -> students; a student's mentor_student_id -> students."""
    e = ds.entity(entity)
    for ref in e.references:
        if field in ref.fields:
            parent = ds.entity(ref.parent)
            return key_origin(ds, parent.name, parent.natural_key[ref.fields.index(field)])
    return entity if field in e.natural_key else ""


def key_fields(ds: Dataset, entity: Entity) -> dict[str, str]:
    """`entity`'s bundle fields that carry another record's single natural key (the kind a
    rename changes), each with the entity it is the key of."""
    fields = {f for ref in entity.references for f in ref.fields}
    origins = {f: key_origin(ds, entity.name, f) for f in sorted(fields)}
    return {f: o for f, o in origins.items() if o and len(ds.entity(o).natural_key) == 1}


def check(ds: Dataset, req: SessionRequest) -> None:
    """Raise InvalidArgument naming the field when `req` cannot be served."""
    if req.scope not in SCOPES:
        raise InvalidArgument(
            f"unknown scope {req.scope!r}; known: {', '.join(SCOPES)}", field="scope"
        )
    if req.whole:
        if req.semester:
            raise InvalidArgument(
                f"scope all takes every {ds.scope_name}: leave {ds.scope_name} empty",
                field=ds.scope_name,
            )
    elif not req.semester.strip():
        raise InvalidArgument(f"{ds.scope_name} is required", field=ds.scope_name)
    if not 1 <= req.batch_size <= MAX_BATCH_RECORDS:
        raise InvalidArgument(
            f"batch_size must be between 1 and {MAX_BATCH_RECORDS}", field="batch_size"
        )
    if req.updated_since is not None and req.updated_since.tzinfo is None:
        raise InvalidArgument("updated_since must carry a time zone", field="updated_since")


@contextmanager
def open_scan(engine: Engine, ds: Dataset, req: SessionRequest) -> Iterator[Scan]:
    """A Scan of `req.semester` inside one snapshot, closed on exit.

    Raises InvalidArgument for a bad request and NotFound for an unknown semester.
    """
    check(ds, req)
    since = req.updated_since
    if since is not None:
        since = since.astimezone(dt.UTC)
        if engine.dialect.name == "sqlite":
            since = since.replace(tzinfo=None)  # stored as naive UTC text; compare alike
    with snapshot(engine) as conn:
        if req.hold_tables and conn.dialect.name == "postgresql":
            tables = ", ".join(f'"{e.table.name}"' for e in ds.in_order())
            conn.exec_driver_sql(f"LOCK TABLE {tables} IN ACCESS SHARE MODE")
        if not req.whole and not semester_exists(conn, ds, req.semester):
            raise NotFound(f"{ds.scope_name} {req.semester!r} does not exist", field=ds.scope_name)
        scan = Scan(conn, ds, req, ds.in_order(), {}, since, school_code(conn))
        scan.counts = {e.name: scan._count(e) for e in scan.entities}
        yield scan
