"""The rows of an entity export: columns, filters, field selection and limit, all derived
from the dataset spec (nothing here is per entity).

`plan_export` validates a request completely before anything is written, so bad input
gets an error naming the offending filter or field and changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.datasets.query import Column, entity_columns, in_scope, live
from ferry.datasets.spec import Dataset, Entity, Kind, SpecError
from ferry.db import tenant
from ferry.errors import InvalidArgument
from ferry.tabular.base import Table, TableColumn
from ferry.tabular.labels import entity_title, field_label

FILTERS = ("status", "search", "semester", "course_code", "date_from", "date_to", "updated_since")


@dataclass(frozen=True)
class ExportRequest:
    """What to export. `filters` are ExportFilters by name; updated_since is ISO-8601."""

    export_type: str
    filters: Mapping[str, str] = field(default_factory=dict)
    fields: Sequence[str] = ()
    limit: int = 0
    include_deleted: bool = False
    # Columns left out when `fields` is empty (the format's bookkeeping columns, e.g. pdf's
    # created_at/updated_at/deleted_at); listing them in `fields` brings them back.
    omit_unless_asked: Sequence[str] = ()
    # "" keeps field names as headers; en | el: labels and words in that language.
    language: str = ""


@dataclass(frozen=True)
class ExportPlan:
    """A validated export: the SQL for its rows and their count, and the table to write."""

    entity: Entity
    columns: list[Column]
    rows: sa.Select[Any]
    count: sa.Select[Any]
    limit: int

    def table(self, filters: Mapping[str, str], expected_rows: int, language: str = "") -> Table:
        """What a format writer needs besides the rows, its words in `language`."""
        return Table(
            title=entity_title(self.entity.name, language),
            columns=[
                TableColumn(c.name, field_label(c.name, language), c.kind) for c in self.columns
            ],
            filters={k: v for k, v in filters.items() if v},
            expected_rows=expected_rows,
            language=language,
        )


def plan_export(conn: Connection, ds: Dataset, req: ExportRequest, max_rows: int) -> ExportPlan:
    """The validated plan for `req`; InvalidArgument naming what is wrong otherwise."""
    try:
        entity = ds.entity(req.export_type)
    except SpecError:
        raise InvalidArgument(
            f"unknown export_type {req.export_type!r}; known: {', '.join(ds.entities)}",
            field="export_type",
            reason="UNKNOWN_VALUE",
            metadata={"value": req.export_type, "known": ", ".join(ds.entities)},
        ) from None
    if req.limit < 0:
        raise InvalidArgument(f"limit must not be negative, got {req.limit}", field="limit")
    if req.limit > max_rows:
        raise InvalidArgument(
            f"limit {req.limit:,} is above the maximum of {max_rows:,} rows (export.max_rows)",
            field="limit",
        )
    limit = req.limit or max_rows
    table = entity.table.alias("t")
    from_, exprs, columns = entity_columns(ds, entity, table)
    chosen = _choose(columns, req.fields)
    if not req.fields and req.omit_unless_asked:
        chosen = [c for c in chosen if c.name not in req.omit_unless_asked] or chosen
    where = _conditions(conn, ds, entity, table, exprs, columns, req)
    rows = (
        sa.select(*(exprs[c.name].label(c.name) for c in chosen))
        .select_from(from_)
        .where(*where)
        .order_by(table.c.id)
        .limit(limit)
    )
    ids = sa.select(table.c.id).select_from(from_).where(*where).limit(limit).subquery()
    count = sa.select(sa.func.count()).select_from(ids)
    return ExportPlan(entity, chosen, rows, count, limit)


def _choose(columns: list[Column], wanted: Sequence[str]) -> list[Column]:
    if not wanted:
        return columns
    by_name = {c.name: c for c in columns}
    unknown = [f for f in wanted if f not in by_name]
    if unknown:
        raise InvalidArgument(
            f"unknown field {unknown[0]!r}; known: {', '.join(by_name)}",
            field="fields",
            reason="UNKNOWN_VALUE",
            metadata={"value": unknown[0], "known": ", ".join(by_name)},
        )
    seen: set[str] = set()
    for f in wanted:
        if f in seen:
            raise InvalidArgument(f"field {f!r} is listed twice", field="fields")
        seen.add(f)
    return [by_name[f] for f in wanted]


def _conditions(
    conn: Connection,
    ds: Dataset,
    entity: Entity,
    table: Any,
    exprs: Mapping[str, sa.ColumnElement[Any]],
    columns: list[Column],
    req: ExportRequest,
) -> list[sa.ColumnElement[bool]]:
    f = {k: v.strip() for k, v in req.filters.items() if v and v.strip()}
    unknown = sorted(set(f) - set(FILTERS))
    if unknown:
        raise InvalidArgument(
            f"unknown filter {unknown[0]!r}; known: {', '.join(FILTERS)}",
            field=f"filters.{unknown[0]}",
        )
    # The application scope (the first wall): the acting school's rows only (the parents
    # the columns join are linked by id, so of the same school).
    where: list[sa.ColumnElement[bool]] = [table.c.school_id == tenant.school_id()]
    if not req.include_deleted:
        # Soft-deleted rows never count, nor rows under a soft-deleted parent at any depth.
        where.append(live(ds, entity, table))
    own = {fd.name: fd for fd in entity.fields}
    if "status" in f:
        if "status" not in own:
            raise _no_such(entity, "status", "status")
        where.append(table.c[own["status"].column_name] == f["status"])
    if "search" in f:
        where.append(_search(conn, [exprs[c.name] for c in columns if c.kind == Kind.STR], f))
    if "semester" in f:
        _check_scope_value(conn, ds, f["semester"])
        where.append(in_scope(ds, entity, table, f["semester"], req.include_deleted))
    if "course_code" in f:
        if "course_code" not in exprs:
            raise _no_such(entity, "course_code", "course_code")
        where.append(exprs["course_code"] == f["course_code"])
    if "date_from" in f or "date_to" in f:
        date_field = next((fd for fd in entity.fields if fd.kind == Kind.DATE), None)
        for name, op in (("date_from", "__ge__"), ("date_to", "__le__")):
            if name not in f:
                continue
            if date_field is None:
                raise _no_such(entity, name, "date")
            value = _parse_date(f[name], name)
            where.append(getattr(table.c[date_field.column_name], op)(value))
    if "updated_since" in f:
        where.append(table.c.updated_at >= _parse_instant(f["updated_since"]))
    return where


def _search(
    conn: Connection, text: list[sa.ColumnElement[Any]], f: Mapping[str, str]
) -> sa.ColumnElement[bool]:
    """Any text field contains the search text, ignoring case in every script."""
    if conn.dialect.name != "sqlite":
        pattern = "%" + _escape_like(f["search"]) + "%"
        return sa.or_(*(e.ilike(pattern, escape="\\") for e in text))
    # SQLite's lower() and LIKE fold ASCII only; the demo data has Greek names.
    conn.connection.driver_connection.create_function(  # type: ignore[union-attr]
        "ferry_casefold", 1, _casefold, deterministic=True
    )
    pattern = "%" + _escape_like(f["search"].casefold()) + "%"
    return sa.or_(*(sa.func.ferry_casefold(e).like(pattern, escape="\\") for e in text))


def _casefold(value: object) -> str | None:
    return None if value is None else str(value).casefold()


def _check_scope_value(conn: Connection, ds: Dataset, value: str) -> None:
    """An unknown semester is a typo, not an empty export: say which ones exist."""
    root = ds.scope_root()
    column = next(r.column for r in root.scope if r.column)
    t = root.table
    found = conn.execute(
        sa.select(t.c.id).where(t.c[column] == value, t.c.school_id == tenant.school_id()).limit(1)
    ).first()
    if found is None:
        known = conn.execute(
            sa.select(t.c[column]).distinct().order_by(t.c[column].desc()).limit(20)
        ).scalars()
        listed = ", ".join(known)
        raise InvalidArgument(
            f"unknown {ds.scope_name} {value!r}; known: {listed or 'none'}",
            field=f"filters.{ds.scope_name}",
            reason="UNKNOWN_VALUE",
            metadata={"value": value, "known": listed},
        )


def _no_such(entity: Entity, filter_name: str, what: str) -> InvalidArgument:
    return InvalidArgument(
        f"filter {filter_name} does not apply to {entity.name}: they have no {what} field",
        field=f"filters.{filter_name}",
    )


def _parse_date(text: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"filters.{name} must be a date like 2026-09-01, got {text!r}",
            field=f"filters.{name}",
            reason="BAD_DATE",
            metadata={"value": text},
        ) from None


def _parse_instant(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(
            f"filters.updated_since must be an ISO-8601 instant, got {text!r}",
            field="filters.updated_since",
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def row_fixer(
    columns: Sequence[Column], dialect: str
) -> Callable[[Iterable[Sequence[Any]]], Iterable[Sequence[Any]]] | None:
    """A per-batch converter making timestamps timezone-aware (SQLite returns naive UTC),
    or None when the rows need no change (PostgreSQL, or no timestamp column)."""
    ts = [i for i, c in enumerate(columns) if c.kind == Kind.TIMESTAMP]
    if dialect != "sqlite" or not ts:
        return None

    def fix(rows: Iterable[Sequence[Any]]) -> Iterable[Sequence[Any]]:
        for row in rows:
            values = list(row)
            for i in ts:
                v = values[i]
                if v is not None and v.tzinfo is None:
                    values[i] = v.replace(tzinfo=dt.UTC)
            yield values

    return fix
