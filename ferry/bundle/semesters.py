"""Which semesters (scope values) exist and how much each holds."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.scan import snapshot
from ferry.datasets.query import count_in_scope
from ferry.datasets.spec import Dataset


@dataclass(frozen=True)
class SemesterInfo:
    name: str
    counts: dict[str, int]  # entity name -> records in scope (soft-deleted left out)


def list_semesters(engine: Engine, ds: Dataset, entities: tuple[str, ...]) -> list[SemesterInfo]:
    """Every scope value with live rows of the scope root, newest name first, with the
    number of records of each of `entities` in its scope."""
    root = ds.scope_root()
    column = root.table.c[next(r.column for r in root.scope if r.column)]
    with snapshot(engine) as conn:
        values = (
            conn.execute(sa.select(column).where(root.table.c.deleted_at.is_(None)).distinct())
            .scalars()
            .all()
        )
        out = []
        for value in sorted(values, key=_semester_order, reverse=True):
            counts = {
                name: int(
                    conn.execute(count_in_scope(ds, ds.entity(name), value, False)).scalar_one()
                )
                for name in entities
            }
            out.append(SemesterInfo(value, counts))
    return out


def _semester_order(name: str) -> tuple[str, int]:
    """'2026-fall' sorts after '2026-spring' (the year, then the term within the year)."""
    year, _, term = name.partition("-")
    return year, {"winter": 0, "spring": 1, "summer": 2, "fall": 3, "autumn": 3}.get(
        term.lower(), 4
    )
