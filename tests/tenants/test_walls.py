"""The two walls between schools on PostgreSQL (docs/tenants.md): with the application
scope patched out, row-level security alone keeps every school's rows from the others,
for reads, writes and a whole import."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa

from ferry.bundle.formats.base import Event
from ferry.datasets.query import key_lookup
from ferry.datasets.school import SCHOOL
from ferry.db import tenant
from ferry.merge import Status
from tests.merge.helpers import counts, edited, records, run
from tests.tenants.conftest import Tenancy

pytestmark = pytest.mark.postgres


def per_school(t: Tenancy, table: str) -> dict[int, int]:
    """Rows of `table` per school, counted by the platform role (no policy binds it)."""
    with t.platform.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT school_id, count(*) FROM {table} GROUP BY 1"))
        return {int(s): int(n) for s, n in rows}


@pytest.fixture
def no_app_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first wall down: every query that would name the school names none."""
    monkeypatch.setattr(tenant, "scope_sql", lambda alias: "TRUE")


def test_row_level_security_alone_keeps_schools_apart(
    tenancy: Tenancy, source_events: list[Event], no_app_scope: None
) -> None:
    t = tenancy
    north, south = t.schools["north"], t.schools["south"]
    sent = records(source_events)
    # Both schools import the same bundle: the same natural keys, twice.
    for school in (north, south):
        with tenant.acting_for(school):
            outcome = run(t.app, source_events)
        assert outcome.status is Status.COMPLETED
        assert counts(outcome)["students"]["created"] == len(sent["students"])
    students = per_school(t, "students")
    assert students == {north: len(sent["students"]), south: len(sent["students"])}

    # The natural-key lookup, its school condition patched out, sees one school's rows.
    lookup = key_lookup(SCHOOL, SCHOOL.entity("students"))
    assert "school_id" not in lookup
    with tenant.acting_for(north), t.app.connect() as conn:
        seen = conn.execute(sa.text(lookup)).all()
    with t.platform.connect() as conn:
        everyone = conn.execute(sa.text(lookup)).all()
        owners = (
            conn.execute(
                sa.text("SELECT DISTINCT school_id FROM students WHERE id = ANY(:ids)"),
                {"ids": [r.id for r in seen]},
            )
            .scalars()
            .all()
        )
    assert len(everyone) == 2 * len(seen) == 2 * len(sent["students"])
    assert owners == [north]

    # A query naming the other school outright gets nothing; a write into it is refused.
    with tenant.acting_for(north), t.app.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM students WHERE school_id = :s"), {"s": south}
            ).scalar_one()
            == 0
        )
        assert (
            conn.execute(
                sa.text("UPDATE students SET first_name = 'x' WHERE school_id = :s"), {"s": south}
            ).rowcount
            == 0
        )
        with pytest.raises(sa.exc.ProgrammingError, match="row-level security"):
            conn.execute(
                sa.text(
                    "INSERT INTO courses (school_id, course_code, semester, title, "
                    "description, credits, teacher, status, created_at, updated_at) "
                    "VALUES (:s, 'X1', '2026-fall', 'X', '', 0, '', 'active', now(), now())"
                ),
                {"s": south},
            )
    # A session that names no school sees no school.
    with psycopg.connect(t.app_url.replace("+psycopg", "")) as raw:
        assert raw.execute("SELECT count(*) FROM students").fetchone() == (0,)

    # An import into north that changes a student touches north's row only, though the
    # lookup that finds it no longer names the school.
    key = sent["students"][0]["student_id"]
    before = snapshot(t, south)
    with tenant.acting_for(north):
        outcome = run(t.app, edited(source_events, "students", 0, first_name="Renamed"))
    assert outcome.status is Status.COMPLETED
    assert counts(outcome)["students"] == {"updated": 1, "unchanged": len(sent["students"]) - 1}
    with t.platform.connect() as conn:
        names = dict(
            conn.execute(
                sa.text("SELECT school_id, first_name FROM students WHERE student_id = :k"),
                {"k": key},
            ).all()
        )
    assert names[north] == "Renamed" and names[south] == sent["students"][0]["first_name"]
    assert snapshot(t, south) == before


def snapshot(t: Tenancy, school: int) -> dict[str, list[tuple[object, ...]]]:
    """Every row of `school` in every dataset table, read by the platform role."""
    out = {}
    with t.platform.connect() as conn:
        for entity in SCHOOL.in_order():
            table = entity.table
            out[entity.name] = [
                tuple(r)
                for r in conn.execute(
                    sa.select(table).where(table.c.school_id == school).order_by(table.c.id)
                )
            ]
    return out
