"""Dataset specs: what entities a dataset has, how they are keyed, linked and scoped.

Export and merge are driven by these specs, never by per-entity code. The dependency
order is computed from the references; self-references and references inside a cycle are
marked for late binding (set after every row exists), so no order ever has to break a cycle.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from google.protobuf.message import Message

from ferry.db.models import Base


class Kind(StrEnum):
    """How a field travels in a bundle."""

    STR = "str"
    INT = "int"
    FLOAT = "float"
    DATE = "date"  # ISO-8601 string in a bundle, DATE in the database
    TIMESTAMP = "timestamp"  # google.protobuf.Timestamp in a bundle


# The plausible range of every DATE field that names none of its own.
DATE_RANGE = ("1900-01-01", "2199-12-31")


@dataclass(frozen=True)
class Field:
    """A value stored on the entity's own table.

    `bounds` (INT and FLOAT: numbers; DATE: "YYYY-MM-DD" texts) is the inclusive range a
    value must lie in; a value outside is a record error naming entity, key, field and
    the range. Every stored number is finite and bounded, so no sum in a report or an
    export can overflow. DATE fields default to DATE_RANGE."""

    name: str
    kind: Kind = Kind.STR
    nullable: bool = False
    column: str = ""  # defaults to `name`
    bounds: tuple[Any, Any] | None = None

    @property
    def column_name(self) -> str:
        return self.column or self.name

    @property
    def range(self) -> tuple[Any, Any] | None:
        """The allowed range: `bounds`, or DATE_RANGE for a date."""
        if self.bounds is None and self.kind is Kind.DATE:
            return DATE_RANGE
        return self.bounds


@dataclass(frozen=True)
class Reference:
    """A link to a parent entity, carried in a bundle as the parent's natural key.

    `fields` are this entity's bundle fields, positionally matching the parent's natural
    key; `column` is the foreign-key column holding the parent's id.
    """

    fields: tuple[str, ...]
    parent: str
    column: str
    nullable: bool = False


@dataclass(frozen=True)
class Scope:
    """One condition that puts a row in a scope (all of an entity's conditions must hold).

    Exactly one of: `column` equals the scope value; the parent named by `via_parent`
    (a reference column) is in scope; or the row is referenced by a child in scope
    (`via_child` = (child entity, child's reference column)).
    """

    column: str = ""
    via_parent: str = ""
    via_child: tuple[str, str] | None = None


@dataclass(frozen=True)
class Entity:
    name: str  # plural, as in RecordBatch and bundle documents: "grades"
    model: type[Base]
    message: type[Message]
    natural_key: tuple[str, ...]
    fields: tuple[Field, ...]
    references: tuple[Reference, ...] = ()
    scope: tuple[Scope, ...] = ()
    # Rows shared between scopes (a student is enrolled in many semesters): they are in a
    # scope for exports, but a scoped `replace` never soft-deletes them; what ties them to
    # the scope (their enrollments of the semester) goes instead. A replace of the whole
    # dataset (scope "all") soft-deletes them like any other row.
    shared: bool = False

    @property
    def table(self) -> Any:
        return self.model.__table__

    @property
    def replaced_in_scope(self) -> bool:
        """Whether a scoped `replace` soft-deletes this entity's rows of the scope that
        the bundle lacks: it has a scope and its rows are not shared between scopes."""
        return bool(self.scope) and not self.shared

    def reference_for(self, column: str) -> Reference:
        for ref in self.references:
            if ref.column == column:
                return ref
        raise KeyError(f"{self.name} has no reference through column {column!r}")


class SpecError(ValueError):
    """A dataset spec that cannot work (unknown parent, cycle without a nullable link...)."""


@dataclass(frozen=True)
class Dataset:
    """A validated dataset spec with its computed dependency order."""

    name: str
    entities: Mapping[str, Entity]
    scope_name: str  # what a scope value means, e.g. "semester"
    order: tuple[str, ...] = field(init=False)
    late: frozenset[tuple[str, str]] = field(init=False)  # (entity, reference column)

    def __post_init__(self) -> None:
        order, late = _plan(self.entities)
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "late", late)

    @classmethod
    def of(cls, name: str, scope_name: str, entities: Iterable[Entity]) -> Dataset:
        return cls(name, {e.name: e for e in entities}, scope_name)

    def entity(self, name: str) -> Entity:
        try:
            return self.entities[name]
        except KeyError:
            known = ", ".join(self.entities)
            raise SpecError(
                f"unknown entity {name!r} in dataset {self.name!r}; known: {known}"
            ) from None

    def in_order(self) -> list[Entity]:
        """Entities with every parent before its children (late-bound links excepted)."""
        return [self.entities[n] for n in self.order]

    def scope_root(self) -> Entity:
        """The first entity whose scope is a plain column: a scope value exists when some
        row of it carries the value (courses for the school's semesters)."""
        for e in self.in_order():
            if any(r.column for r in e.scope):
                return e
        raise SpecError(f"dataset {self.name!r} has no entity scoped by a column")

    def is_late(self, entity: str, ref: Reference) -> bool:
        return (entity, ref.column) in self.late


def _plan(entities: Mapping[str, Entity]) -> tuple[tuple[str, ...], frozenset[tuple[str, str]]]:
    """Topologically order entities; mark self-references and cycle edges late-bound."""
    late: set[tuple[str, str]] = set()
    edges: dict[str, list[tuple[str, Reference]]] = {n: [] for n in entities}
    for e in entities.values():
        for ref in e.references:
            if ref.parent not in entities:
                raise SpecError(f"{e.name}.{ref.column} refers to unknown entity {ref.parent!r}")
            parent_key = entities[ref.parent].natural_key
            if len(ref.fields) != len(parent_key):
                raise SpecError(
                    f"{e.name}.{ref.column}: fields {ref.fields} do not match the natural key "
                    f"{parent_key} of {ref.parent}"
                )
            if ref.parent == e.name:
                _require_nullable(e, ref, "self-reference")
                late.add((e.name, ref.column))
            else:
                edges[e.name].append((ref.parent, ref))
    for component in _cycles(entities, edges):
        for child in component:
            for parent, ref in edges[child]:
                if parent in component:
                    _require_nullable(entities[child], ref, "reference inside a cycle")
                    late.add((child, ref.column))
    order: list[str] = []
    placed: set[str] = set()
    pending = list(entities)  # declaration order breaks ties, so the order is stable
    while pending:
        ready = [
            n for n in pending if all(p in placed for p, r in edges[n] if (n, r.column) not in late)
        ]
        if not ready:  # cannot happen once cycles are cut; kept as a guard
            raise SpecError(f"cannot order entities {pending}")
        for n in ready:
            order.append(n)
            placed.add(n)
        pending = [n for n in pending if n not in placed]
    return tuple(order), frozenset(late)


def _require_nullable(entity: Entity, ref: Reference, what: str) -> None:
    if not ref.nullable:
        raise SpecError(
            f"{entity.name}.{ref.column} is a {what} and must be nullable to be bound late"
        )


def _cycles(
    entities: Mapping[str, Entity], edges: Mapping[str, list[tuple[str, Reference]]]
) -> list[set[str]]:
    """Strongly connected components with more than one entity (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for name in entities:
        if name not in index:
            visit(name)
    return found
