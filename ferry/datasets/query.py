"""SQL from dataset specs: what is in a scope, and the rows of an entity with its parents
named by natural key. Everything here is derived from the spec; nothing is per entity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ferry.datasets.spec import Dataset, Entity, Kind
from ferry.db import tenant
from ferry.db.import_models import PendingLink


@dataclass(frozen=True)
class Column:
    """One output column of an entity's export query."""

    name: str  # bundle field name
    kind: Kind
    nullable: bool


def in_scope(
    ds: Dataset, entity: Entity, table: Any, value: str | None, include_deleted: bool
) -> sa.ColumnElement[bool]:
    """A predicate on `table` (an alias of the entity's table) selecting rows in scope;
    `value` None is the whole dataset (every row, those in no scope too)."""
    conds: list[sa.ColumnElement[bool]] = []
    if not include_deleted:
        conds.append(table.c.deleted_at.is_(None))
        # A row whose required parent is soft-deleted goes with its parent, or the bundle
        # would name a parent it does not carry (an enrollment of a deleted student).
        for ref in entity.references:
            if not ref.nullable and ref.parent != entity.name:
                parent = ds.entity(ref.parent).table.alias()
                live = sa.select(parent.c.id).where(parent.c.deleted_at.is_(None))
                conds.append(table.c[ref.column].in_(live))
    for rule in entity.scope if value is not None else ():
        if rule.column:
            conds.append(table.c[rule.column] == value)
        elif rule.via_parent:
            parent = ds.entity(entity.reference_for(rule.via_parent).parent)
            conds.append(
                table.c[rule.via_parent].in_(_ids_in_scope(ds, parent, value, include_deleted))
            )
        elif rule.via_child:
            child_name, child_column = rule.via_child
            child = ds.entity(child_name)
            alias = child.table.alias()
            ids = sa.select(alias.c[child_column]).where(
                in_scope(ds, child, alias, value, include_deleted)
            )
            conds.append(table.c.id.in_(ids))
    return sa.and_(sa.true(), *conds)


def live(ds: Dataset, entity: Entity, table: Any) -> sa.ColumnElement[bool]:
    """A predicate on `table` (an alias of the entity's table): the row and every required
    parent it hangs from, all the way up, are live (a grade of a deleted course is not)."""
    conds: list[sa.ColumnElement[bool]] = [table.c.deleted_at.is_(None)]
    for ref in entity.references:
        if not ref.nullable and ref.parent != entity.name:
            parent = ds.entity(ref.parent)
            alias = parent.table.alias()
            conds.append(
                table.c[ref.column].in_(sa.select(alias.c.id).where(live(ds, parent, alias)))
            )
    return sa.and_(*conds)


def _ids_in_scope(
    ds: Dataset, entity: Entity, value: str | None, include_deleted: bool
) -> sa.Select[Any]:
    alias = entity.table.alias()
    return sa.select(alias.c.id).where(in_scope(ds, entity, alias, value, include_deleted))


def count_in_scope(
    ds: Dataset, entity: Entity, value: str | None, include_deleted: bool
) -> sa.Select[Any]:
    """SELECT count(*) of the entity's rows in scope."""
    table = entity.table.alias("t")
    return (
        sa.select(sa.func.count())
        .select_from(table)
        .where(in_scope(ds, entity, table, value, include_deleted))
    )


def entity_columns(
    ds: Dataset, entity: Entity, table: Any
) -> tuple[Any, dict[str, sa.ColumnElement[Any]], list[Column]]:
    """Every bundle field of the entity on `table` (an alias of its table): the FROM clause
    with parents joined, an expression per field (references resolved to the parent's
    natural key, NULL when a nullable link is unset), and the columns in message order."""
    from_: Any = table
    exprs: dict[str, sa.ColumnElement[Any]] = {
        f.name: table.c[f.column_name] for f in entity.fields
    }
    kinds = {f.name: (f.kind, f.nullable) for f in entity.fields}
    for i, ref in enumerate(entity.references):
        parent = ds.entity(ref.parent)
        palias = parent.table.alias(f"p{i}")
        from_ = from_.join(palias, table.c[ref.column] == palias.c.id, isouter=ref.nullable)
        keys, from_ = _key_exprs(ds, parent, palias, from_, f"p{i}_", ref.nullable)
        waiting = None
        if ds.is_late(entity.name, ref) and len(ref.fields) == 1:
            # A link held pending (its target exists nowhere here yet) travels on as the
            # target's natural key, exactly as it arrived: an export relays what it holds.
            links = PendingLink.__table__.alias(f"l{i}")
            from_ = from_.outerjoin(
                links,
                sa.and_(
                    links.c.row_id == table.c.id,
                    links.c.entity == entity.name,
                    links.c.field == ref.fields[0],
                    links.c.closed_by.is_(None),
                ),
            )
            waiting = links.c.target_key
        for own, key in zip(ref.fields, parent.natural_key, strict=True):
            exprs[own] = keys[key] if waiting is None else sa.func.coalesce(keys[key], waiting)
            kinds.setdefault(own, (Kind.STR, ref.nullable))
    names = [fd.name for fd in entity.message.DESCRIPTOR.fields if fd.name in exprs]
    return from_, exprs, [Column(n, *kinds[n]) for n in names]


def export_query(
    ds: Dataset, entity: Entity, value: str | None, include_deleted: bool
) -> tuple[sa.Select[Any], list[Column]]:
    """The entity's rows in scope, ordered by id, every field as in a bundle."""
    table = entity.table.alias("t")
    from_, exprs, columns = entity_columns(ds, entity, table)
    query = (
        sa.select(*(exprs[c.name].label(c.name) for c in columns))
        .select_from(from_)
        .where(in_scope(ds, entity, table, value, include_deleted))
        .order_by(table.c.id)
    )
    return query, columns


def _key_exprs(
    ds: Dataset, entity: Entity, table: Any, from_: Any, prefix: str, outer: bool
) -> tuple[dict[str, sa.ColumnElement[Any]], Any]:
    """Expressions for `entity`'s natural key on `table`, joining further parents as needed."""
    keys: dict[str, sa.ColumnElement[Any]] = {}
    own = {f.name: f for f in entity.fields}
    for i, ref in enumerate(entity.references):
        if not set(ref.fields) & set(entity.natural_key):
            continue
        parent = ds.entity(ref.parent)
        palias = parent.table.alias(f"{prefix}{i}")
        from_ = from_.join(
            palias, table.c[ref.column] == palias.c.id, isouter=outer or ref.nullable
        )
        pkeys, from_ = _key_exprs(ds, parent, palias, from_, f"{prefix}{i}_", outer or ref.nullable)
        for mine, theirs in zip(ref.fields, parent.natural_key, strict=True):
            keys[mine] = pkeys[theirs]
    for k in entity.natural_key:
        if k in own:
            keys[k] = table.c[own[k].column_name]
    missing = set(entity.natural_key) - set(keys)
    if missing:
        raise ValueError(f"{entity.name}: natural key fields {sorted(missing)} have no source")
    return keys, from_


# SQL text over a dataset's tables, shared by the merge engine and the sql bundle format.


def q(name: str) -> str:
    """A quoted SQL identifier (field names such as `date` are reserved words)."""
    return '"' + name.replace('"', '""') + '"'


def key_lookup(ds: Dataset, entity: Entity, scope: str | None = None, school: str = "") -> str:
    """SELECT id, <natural key fields> of every row of `entity` (soft-deleted included)
    of one school, joining parents where the key is made of their keys (a parent is of
    its child's school). `school`: SQL giving the school's id; by default the acting
    school's (ferry.db.tenant).

    With `scope` (a scope value), also `in_scope`: 1 when the row is in that scope (by
    the entity's scope rules, as in_scope with soft-deleted rows included), else 0, read
    through the parents the key joins anyway (see scope_in_lookup for when it can be)."""
    joins: list[str] = []
    exprs = _key_sql(ds, entity, "k", joins)
    keys = ", ".join(f"{exprs[k]} AS {q(k)}" for k in entity.natural_key)
    if scope is not None:
        literal = "'" + scope.replace("'", "''") + "'"
        cond = _scope_sql(ds, entity, "k", joins, literal)
        if cond is None:
            raise ValueError(f"{entity.name}: its scope is not read by joins (scope_in_lookup)")
        keys += f", CASE WHEN {cond} THEN 1 ELSE 0 END AS in_scope"
    where = f"k.school_id = {school}" if school else tenant.scope_sql("k")
    return (
        f"SELECT k.id AS id, {keys} FROM {q(entity.table.name)} k {' '.join(joins)} WHERE {where}"
    )


def key_constraint(entity: Entity, columns: list[str]) -> list[str]:
    """The columns of `entity`'s unique constraint on its natural-key `columns`: with
    `school_id` first where the key is unique per school (migration 0013), for an
    ON CONFLICT target."""
    for constraint in entity.table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            names = [c.name for c in constraint.columns]
            if set(names) - {"school_id"} == set(columns):
                return names
    return columns


def scope_in_lookup(ds: Dataset, entity: Entity) -> bool:
    """Whether key_lookup can tell `entity`'s rows in a scope: its scope rules, and those
    of the parents they go through, are columns and parents (not children)."""
    return bool(entity.scope) and _scope_sql(ds, entity, "k", [], "''") is not None


def _scope_sql(
    ds: Dataset, entity: Entity, alias: str, joins: list[str], literal: str
) -> str | None:
    """SQL: row `alias` of `entity` is in scope `literal` (every rule holds; a NULL
    value or a missing parent is not in it). A parent the key already joins (_key_sql
    names it `alias`<i>) is read there; another is joined here. None when a rule goes
    through children (via_child), which joins cannot read."""
    conds: list[str] = []
    for rule in entity.scope:
        if rule.column:
            conds.append(f"{alias}.{q(rule.column)} = {literal}")
        elif rule.via_parent:
            i, ref = next(
                (i, r) for i, r in enumerate(entity.references) if r.column == rule.via_parent
            )
            parent = ds.entity(ref.parent)
            if set(ref.fields) & set(entity.natural_key):
                palias = f"{alias}{i}"  # joined by _key_sql
            else:
                palias = f"{alias}s{i}"
                joins.append(
                    f"LEFT JOIN {q(parent.table.name)} {palias} "
                    f"ON {alias}.{q(ref.column)} = {palias}.id"
                )
            inner = _scope_sql(ds, parent, palias, joins, literal)
            if inner is None:
                return None
            conds.append(inner)
        else:
            return None
    if not conds:  # no rules: every row is in (in_scope's `true`)
        return f"{alias}.id IS NOT NULL"
    return " AND ".join(f"({c})" for c in conds)


def _key_sql(ds: Dataset, entity: Entity, alias: str, joins: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in entity.fields:
        if f.name in entity.natural_key:
            out[f.name] = f"{alias}.{q(f.column_name)}"
    for i, ref in enumerate(entity.references):
        if not set(ref.fields) & set(entity.natural_key):
            continue
        parent = ds.entity(ref.parent)
        palias = f"{alias}{i}"
        joins.append(
            f"JOIN {q(parent.table.name)} {palias} ON {alias}.{q(ref.column)} = {palias}.id"
        )
        theirs = _key_sql(ds, parent, palias, joins)
        for mine, key in zip(ref.fields, parent.natural_key, strict=True):
            out.setdefault(mine, theirs[key])
    return out
