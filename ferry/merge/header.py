"""The bundle's header is checked against its records: every scoped record of a semester
bundle belongs to the header's semester.

Driven by the dataset spec's scope rules and set-based: plan.resolve gives a record
outside the status `scope` in the statement that resolves it (scope_condition), before
anything of its entity is applied; only then are the rules asked which record broke
which (refuse_out_of_scope):
- a `Scope(column=...)` rule (courses, highlights): the record's own value of that column
  (the database row's, for an existing record whose file does not carry it);
- a `Scope(via_parent=...)` rule (enrollments via their course, grades via their
  enrollment...): the parent the record names, which this run applied already or the
  database holds, must be in the semester. The resolve statement looks that parent up by
  its natural key anyway, joining the parents its key is made of (an enrollment's
  course): the same lookup reads whether the parent is in the semester
  (key_lookup's `in_scope`), so the check is a comparison per row, not a probe of the
  semester's ids. A parent whose scope the lookup cannot read (a rule through children)
  is probed among the semester's ids instead.
Entities shared between scopes (students) are in no one semester and are not checked.
A record outside is InvalidArgument naming it (entity, position, key) and both
semesters, for every strategy; the run's transaction then rolls back, so nothing is
changed and nothing soft-deleted. (A `replace` would otherwise soft-delete the header's
semester while importing another one.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.datasets.query import in_scope, scope_in_lookup
from ferry.datasets.spec import Dataset, Entity
from ferry.db import tenant
from ferry.errors import InvalidArgument
from ferry.merge.shape import Shape, q


@dataclass(frozen=True)
class ScopeCheck:
    """What plan.resolve adds to put rows outside the bundle's semester: `conds`, SQL
    conditions on a resolved row `x` (one per scope rule); `extra`, columns of the inner
    select they read (`t` is the existing row, p<i> parent i's lookup); `lookups`, the
    parents (reference index -> semester) whose lookup must carry `in_scope`."""

    conds: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    lookups: dict[int, str] = dataclasses.field(default_factory=dict)


def scope_condition(ds: Dataset, shape: Shape, semester: str, dialect: sa.Dialect) -> ScopeCheck:
    """The conditions that put a resolved row outside `semester` (see ScopeCheck).
    plan.resolve gives such rows the status `scope`, inside the statement that resolves
    them anyway: the check costs a comparison per row, not a statement of its own."""
    entity = shape.entity
    if not semester or entity.shared or not entity.scope:
        return ScopeCheck()
    literal = "'" + semester.replace("'", "''") + "'"
    conds: list[str] = []
    extra: list[str] = []
    lookups: dict[int, str] = {}
    for rule in entity.scope:
        if rule.column:
            field = next(f for f in entity.fields if f.column_name == rule.column)
            if shape.carries(field.name):
                value = f"x.{q(field.name)}"
                conds.append(f"({value} IS NULL OR {value} <> {literal})")
            else:  # an existing record keeps its own (a new one is `absent`)
                extra.append(f"t.{q(rule.column)} AS {q('scope_' + rule.column)}")
                value = f"x.{q('scope_' + rule.column)}"
                conds.append(f"(x.tid IS NOT NULL AND ({value} IS NULL OR {value} <> {literal}))")
        elif rule.via_parent:
            parent = ds.entity(entity.reference_for(rule.via_parent).parent)
            r = next(r for r in shape.refs if r.ref.column == rule.via_parent)
            if parent.shared or not parent.scope or not shape.carries_ref(r):
                continue
            if scope_in_lookup(ds, parent) and not r.late:
                # The parent found (p<i>.id) is in the semester or not (its in_scope);
                # none found is a missing parent, not this check's.
                lookups[r.index] = semester
                extra.append(f"p{r.index}.in_scope AS scope_r{r.index}")
                conds.append(f"x.scope_r{r.index} = 0")
            else:
                ids = _scope_ids(dialect, ds, parent, semester)
                conds.append(f"(x.r{r.index} IS NOT NULL AND x.r{r.index} NOT IN ({ids}))")
    return ScopeCheck(tuple(conds), tuple(extra), lookups)


def refuse_out_of_scope(conn: Connection, ds: Dataset, shape: Shape, semester: str) -> None:
    """Raise InvalidArgument for the first record of `shape` (resolved, not yet applied)
    that does not belong to `semester` (called once resolve found one)."""
    entity = shape.entity
    if entity.shared or not entity.scope:
        return
    table = q(entity.table.name)
    keys = ", ".join(f"x.{q(k)}" for k in entity.natural_key)
    for rule in entity.scope:
        if rule.column:
            field = next(f for f in entity.fields if f.column_name == rule.column)
            value = f"x.{q(field.name)}" if shape.carries(field.name) else f"t.{q(rule.column)}"
            row = conn.execute(
                sa.text(
                    f"SELECT x.pos, {value}, {keys} FROM {shape.resolved} x "
                    f"LEFT JOIN {table} t ON t.id = x.tid WHERE x.ok = 1 AND x.st = 'scope' "
                    f"AND ({value} IS NULL OR {value} <> :sem) ORDER BY x.pos LIMIT 1"
                ),
                {"sem": semester},
            ).first()
            if row is not None:
                _refuse(shape, row[0], row[2:], field.name, row[1], semester, "")
        elif rule.via_parent:
            ref = entity.reference_for(rule.via_parent)
            parent = ds.entity(ref.parent)
            if parent.shared or not parent.scope:
                continue
            r = next(r for r in shape.refs if r.ref.column == rule.via_parent)
            if not shape.carries_ref(r):
                continue  # an existing record keeps its parent; a new one is `absent`
            ids = _scope_ids(conn.dialect, ds, parent, semester)
            row = conn.execute(
                sa.text(
                    f"SELECT x.pos, x.r{r.index}, {keys} FROM {shape.resolved} x "
                    f"WHERE x.st = 'scope' AND x.r{r.index} IS NOT NULL AND x.r{r.index} NOT IN "
                    f"({ids}) ORDER BY x.pos LIMIT 1"
                )
            ).first()
            if row is not None:
                got = _semester_of(conn, ds, parent, row[1])
                why = f" (its {parent.name} record is of {got or 'no semester'})"
                _refuse(shape, row[0], row[2:], ",".join(ref.fields), got, semester, why)


def _scope_ids(dialect: sa.Dialect, ds: Dataset, entity: Entity, semester: str) -> str:
    """SQL: the ids of the acting school's `entity` rows in `semester`, soft-deleted
    ones included."""
    alias = entity.table.alias("s")
    query = sa.select(alias.c.id).where(
        alias.c.school_id == tenant.school_id(), in_scope(ds, entity, alias, semester, True)
    )
    return str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _semester_of(conn: Connection, ds: Dataset, entity: Entity, row_id: Any) -> str:
    """The scope value row `row_id` of `entity` belongs to, following its scope rules up
    to a column (only ever called for the one record being refused)."""
    for rule in entity.scope:
        if rule.column:
            value = conn.execute(
                sa.select(entity.table.c[rule.column]).where(entity.table.c.id == row_id)
            ).scalar()
            return "" if value is None else str(value)
    for rule in entity.scope:
        if rule.via_parent:
            parent_id = conn.execute(
                sa.select(entity.table.c[rule.via_parent]).where(entity.table.c.id == row_id)
            ).scalar()
            parent = ds.entity(entity.reference_for(rule.via_parent).parent)
            return _semester_of(conn, ds, parent, parent_id)
    return ""


def _refuse(
    shape: Shape,
    pos: int,
    key: Any,
    field: str,
    got: Any,
    semester: str,
    why: str,
) -> None:
    display = "/".join("" if v is None else str(v) for v in key)
    raise InvalidArgument(
        f"{shape.name} record {pos} ({display}) belongs to semester {got or '(none)'}{why}, "
        f"but the bundle's header says semester {semester}: a semester's bundle holds only "
        "that semester's records; nothing was imported",
        field=f"{shape.name}[{pos}].{field}",
    )
