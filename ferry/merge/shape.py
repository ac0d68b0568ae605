"""Each entity's staging layout and the SQL fragments derived from the dataset spec.

A staged row holds the bundle's fields (own fields and parents' natural keys) under their
bundle names, plus `pos` (1-based position in the entity) and `ok` (0 when a value was
refused in Python). Nothing here is per entity: it is all read from the spec.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ferry.datasets.query import key_lookup as key_lookup
from ferry.datasets.query import q as q
from ferry.datasets.spec import Dataset, Entity, Kind, Reference
from ferry.db import tenant
from ferry.merge.values import INT32, INT64, Converter, converter


@dataclass(frozen=True)
class Col:
    """One staged bundle field."""

    name: str  # bundle field name = staging column name
    kind: Kind
    nullable: bool
    ddl: str  # SQL type of the staging column (the target column's type)
    target: str  # the entity's own column, "" for a parent's key field
    convert: Converter
    length: int | None  # text length limit
    bounds: tuple[int, int]  # integer range
    copy_type: str  # PostgreSQL type name for binary COPY
    # The spec's allowed range (FLOAT: numbers; DATE: dt.date); INT ranges are in bounds.
    range: tuple[Any, Any] | None = None

    @property
    def bookkeeping(self) -> bool:
        """created_at/updated_at: kept by Ferry, not compared, filled with now when absent."""
        return self.kind is Kind.TIMESTAMP and not self.nullable and bool(self.target)


@dataclass(frozen=True)
class Ref:
    index: int
    ref: Reference
    parent: Entity
    late: bool


@dataclass(frozen=True)
class Shape:
    entity: Entity
    cols: tuple[Col, ...]
    refs: tuple[Ref, ...]
    # (target column, reference index or bundle field) identifying a row by its natural key
    target_key: tuple[tuple[str, int | str], ...]
    stage_table: str = ""
    # The fields this run's records carry (None: every field). A field not carried is
    # never compared nor written: a partial file changes only what it carries.
    carried: frozenset[str] | None = None

    def carrying(self, carried: frozenset[str] | None) -> Shape:
        """This shape for a run whose records carry `carried` (None: every field)."""
        if carried is not None and carried >= {c.name for c in self.cols}:
            carried = None
        return dataclasses.replace(self, carried=carried)

    def carries(self, name: str) -> bool:
        return self.carried is None or name in self.carried

    def carries_ref(self, r: Ref) -> bool:
        return self.carried is None or all(f in self.carried for f in r.ref.fields)

    @property
    def written(self) -> list[Col]:
        """The own columns this run compares and updates: carried, not bookkeeping."""
        return [c for c in self.cols if c.target and not c.bookkeeping and self.carries(c.name)]

    @property
    def written_refs(self) -> list[Ref]:
        """The references this run compares and sets: carried ones."""
        return [r for r in self.refs if self.carries_ref(r)]

    @property
    def lacking(self) -> list[str]:
        """Required fields the records do not carry: a record to create cannot be."""
        if self.carried is None:
            return []
        own = [c.name for c in self.own if not c.nullable and not c.bookkeeping]
        refs = [f for r in self.refs if not r.ref.nullable for f in r.ref.fields]
        return [n for n in dict.fromkeys(own + refs) if not self.carries(n)]

    @property
    def name(self) -> str:
        return self.entity.name

    @property
    def stage(self) -> str:
        """The staging table: TEMP on SQLite; on PostgreSQL an UNLOGGED table filled on
        a connection of its own (ferry.merge.pipeline), one per dataset and entity."""
        return self.stage_table or f"merge_stage_{self.entity.name}"

    @property
    def resolved(self) -> str:
        return f"merge_resolved_{self.entity.name}"

    @property
    def scope(self) -> str:
        return f"merge_scope_{self.entity.name}"

    @property
    def own(self) -> list[Col]:
        return [c for c in self.cols if c.target]

    def col(self, name: str) -> Col:
        return next(c for c in self.cols if c.name == name)


def build_shapes(ds: Dataset, dialect: sa.Dialect) -> dict[str, Shape]:
    """The staging layout of every entity of `ds`, in dependency order."""
    sqlite = dialect.name == "sqlite"
    return {e.name: _shape(ds, e, dialect, sqlite) for e in ds.in_order()}


def _shape(ds: Dataset, entity: Entity, dialect: sa.Dialect, sqlite: bool) -> Shape:
    # Every column is staged as its own type, created_at/updated_at too: a binary COPY of
    # typed values parses nothing on either side. (They were staged as text, parsed only
    # for the rows created, while PostgreSQL parsed the JSON of raw runs itself.)
    table = entity.table
    cols: list[Col] = []
    for f in entity.fields:
        column = table.c[f.column_name]
        cols.append(
            _col(f.name, f.kind, f.nullable, column, f.column_name, dialect, sqlite, f.range)
        )
    refs: list[Ref] = []
    for i, ref in enumerate(entity.references):
        parent = ds.entity(ref.parent)
        refs.append(Ref(i, ref, parent, ds.is_late(entity.name, ref)))
        for own, theirs in zip(ref.fields, parent.natural_key, strict=True):
            if any(c.name == own for c in cols):
                continue
            kind, column = key_source(ds, parent, theirs)
            cols.append(_col(own, kind, ref.nullable, column, "", dialect, sqlite))
    target_key: list[tuple[str, int | str]] = []
    for k in entity.natural_key:
        item: tuple[str, int | str]
        for r in refs:
            if k in r.ref.fields:
                item = (r.ref.column, r.index)
                break
        else:
            item = (next(c.target for c in cols if c.name == k), k)
        if item not in target_key:
            target_key.append(item)
    stage = "" if sqlite else f"ferry_stage_{ds.name}_{entity.name}"
    return Shape(entity, tuple(cols), tuple(refs), tuple(target_key), stage)


def _col(
    name: str,
    kind: Kind,
    nullable: bool,
    column: Any,
    target: str,
    dialect: sa.Dialect,
    sqlite: bool,
    allowed: tuple[Any, Any] | None = None,
) -> Col:
    length = getattr(column.type, "length", None)
    big = isinstance(column.type, sa.BigInteger) and not sqlite
    bounds = INT64 if big else INT32
    span: tuple[Any, Any] | None = None
    if allowed is not None and kind is Kind.INT:
        bounds = (max(bounds[0], int(allowed[0])), min(bounds[1], int(allowed[1])))
    elif allowed is not None and kind is Kind.FLOAT:
        span = (float(allowed[0]), float(allowed[1]))
    elif allowed is not None and kind is Kind.DATE:
        span = (dt.date.fromisoformat(allowed[0]), dt.date.fromisoformat(allowed[1]))
    optional = nullable or (kind is Kind.TIMESTAMP and bool(target))
    copy_type = {
        Kind.STR: "text",
        Kind.INT: "int8" if big else "int4",
        Kind.FLOAT: "float8",
        Kind.DATE: "date",
        Kind.TIMESTAMP: "timestamptz",
    }[kind]
    ddl = column.type.compile(dialect=dialect)
    convert = converter(kind, optional, length, bounds, sqlite, span)
    return Col(name, kind, nullable, ddl, target, convert, length, bounds, copy_type, span)


def key_source(ds: Dataset, entity: Entity, field: str) -> tuple[Kind, Any]:
    """The kind and table column that ultimately hold natural-key field `field`."""
    for f in entity.fields:
        if f.name == field:
            return f.kind, entity.table.c[f.column_name]
    for ref in entity.references:
        if field in ref.fields:
            parent = ds.entity(ref.parent)
            return key_source(ds, parent, parent.natural_key[ref.fields.index(field)])
    raise ValueError(f"{entity.name}: natural key field {field!r} has no source")


def key_match(shape: Shape, table: str, row: str, ref_prefix: str = "") -> str:
    """SQL: `table`'s row is of the acting school and has the natural key of resolved
    row `row` (ids in `row`.r<i>, or in `ref_prefix`<i>.id when given)."""
    parts = [tenant.scope_sql(table)]
    for column, src in shape.target_key:
        if isinstance(src, int):
            expr = f"{ref_prefix}{src}.id" if ref_prefix else f"{row}.r{src}"
        else:
            expr = f"{row}.{q(src)}"
        parts.append(f"{table}.{q(column)} = {expr}")
    return " AND ".join(parts)


def same(a: str, b: str, sqlite: bool) -> str:
    """NULL-safe equality."""
    return f"({a} IS {b})" if sqlite else f"({a} IS NOT DISTINCT FROM {b})"


def differs(a: str, b: str, sqlite: bool) -> str:
    """NULL-safe inequality."""
    return f"({a} IS NOT {b})" if sqlite else f"({a} IS DISTINCT FROM {b})"


def text_of(value: Any) -> str:
    """A value as plans, samples and conflicts show it: "" for none, dates and instants
    in ISO, anything else as str()."""
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)
