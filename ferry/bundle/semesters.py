"""Which semesters (scope values) exist and how much each holds.

The counts are kept with the data, not counted per call: `recount` rewrites the
scope_counts rows of the semesters a write touched, inside that write's transaction
(ferry.merge.run for imports and restores, ferry.merge.undo, the demo seed), so
`list_semesters` is one indexed read whose numbers are exactly what counting would give
(tests/bundle/test_semester_counts.py holds them to plain SQL after random imports and
undos). Entities not kept there (COUNTED) are still counted on the spot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.datasets.query import count_in_scope
from ferry.datasets.spec import Dataset
from ferry.db import tenant
from ferry.db.count_models import ScopeCount

# The entities whose counts ListSemesters shows, kept per semester in scope_counts.
COUNTED = ("courses", "students", "enrollments")
_T = cast(sa.Table, ScopeCount.__table__)


@dataclass(frozen=True)
class SemesterInfo:
    name: str
    counts: dict[str, int]  # entity name -> records in scope (soft-deleted left out)


def list_semesters(engine: Engine, ds: Dataset, entities: tuple[str, ...]) -> list[SemesterInfo]:
    """Every scope value with live rows of the scope root, newest name first, with the
    number of records of each of `entities` in its scope."""
    kept = [e for e in entities if e in _counted(ds)]
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(_T.c.scope, _T.c.entity, _T.c.records).where(
                _T.c.dataset == ds.name, _T.c.school_id == tenant.school_id()
            )
        ).all()
        found: dict[str, dict[str, int]] = {}
        for scope, entity, records in rows:
            found.setdefault(scope, {})[entity] = int(records)
        out = []
        for value in sorted(found, key=_semester_order, reverse=True):
            counts = {name: found[value].get(name, 0) for name in kept}
            for name in entities:
                if name not in counts:
                    query = _mine(count_in_scope(ds, ds.entity(name), value, False))
                    counts[name] = int(conn.execute(query).scalar_one())
            out.append(SemesterInfo(value, counts))
    return out


def recount(conn: Connection, ds: Dataset, semesters: Iterable[str] | None) -> int:
    """Rewrite the kept counts of `semesters` (None: of every semester) from the data, in
    the caller's transaction, which is the one that changed the data; a semester left
    without live scope-root rows loses its rows. Returns the semesters counted."""
    root = ds.scope_root()
    column = root.table.c[next(r.column for r in root.scope if r.column)]
    school = tenant.school_id()  # the application scope: the acting school's rows only
    live_values = (
        sa.select(column)
        .where(root.table.c.deleted_at.is_(None), root.table.c.school_id == school)
        .distinct()
    )
    mine = sa.and_(_T.c.dataset == ds.name, _T.c.school_id == school)
    if semesters is None:
        conn.execute(_T.delete().where(mine))
        values = sorted(str(v) for v in conn.execute(live_values).scalars())
    else:
        wanted = sorted(set(semesters))
        if not wanted:
            return 0
        conn.execute(_T.delete().where(mine, _T.c.scope.in_(wanted)))
        values = sorted(
            str(v) for v in conn.execute(live_values.where(column.in_(wanted))).scalars()
        )
    rows = [
        {
            "dataset": ds.name,
            "scope": value,
            "entity": name,
            "records": int(
                conn.execute(_mine(count_in_scope(ds, ds.entity(name), value, False))).scalar_one()
            ),
        }
        for value in values
        for name in _counted(ds)
    ]
    if rows:
        conn.execute(_T.insert(), rows)
    return len(values)


def _mine(query: sa.Select[Any]) -> sa.Select[Any]:
    """A count_in_scope (over table `t`) of the acting school's rows only."""
    return query.where(sa.text(tenant.scope_sql("t")))


def _counted(ds: Dataset) -> tuple[str, ...]:
    """COUNTED of the dataset's entities, and always its scope root: a semester's rows
    are what says it exists."""
    names = {e.name for e in ds.in_order()}
    root = ds.scope_root().name
    return (root, *(n for n in COUNTED if n in names and n != root))


def _semester_order(name: str) -> tuple[str, int]:
    """'2026-fall' sorts after '2026-spring' (the year, then the term within the year)."""
    year, _, term = name.partition("-")
    return year, {"winter": 0, "spring": 1, "summer": 2, "fall": 3, "autumn": 3}.get(
        term.lower(), 4
    )
