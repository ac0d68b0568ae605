"""The schema never cascades a delete (migration 0005), and undoing imports newest first
returns every table to what it was before each of them."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch, Event
from ferry.datasets.school import SCHOOL
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from ferry.merge import Status, undo_import
from tests.conftest import fresh_database
from tests.merge.helpers import bundle, checksum, edited, execute, records, run, scalar

NEEDED = [  # (delete from, a row that others need)
    ("students", "SELECT min(student_ref) FROM enrollments"),
    ("students", "SELECT min(student_ref) FROM highlights"),
    ("courses", "SELECT min(course_ref) FROM enrollments"),
    ("enrollments", "SELECT min(enrollment_ref) FROM grades"),
    ("enrollments", "SELECT min(enrollment_ref) FROM attendance"),
    ("enrollments", "SELECT min(enrollment_ref) FROM daily_performance"),
]


def test_deleting_a_row_that_others_need_fails_and_optional_links_are_cleared(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    before = checksum(target)
    for table, needed in NEEDED:
        row = scalar(target, needed)
        with pytest.raises(sa.exc.IntegrityError):
            execute(target, f"DELETE FROM {table} WHERE id = :id", id=row)
        assert checksum(target) == before, table
    # A mentor (optional self-link) may go; the link is cleared, nothing else.
    mentor = scalar(
        target,
        "SELECT min(s.mentor_id) FROM students s WHERE s.mentor_id NOT IN "
        "(SELECT student_ref FROM enrollments) AND s.mentor_id NOT IN "
        "(SELECT student_ref FROM highlights)",
    )
    if mentor is not None:
        execute(target, "DELETE FROM students WHERE id = :id", id=mentor)
        assert scalar(target, "SELECT count(*) FROM students WHERE mentor_id = :m", m=mentor) == 0


@pytest.mark.parametrize(
    "backend_", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_migration_0005_keeps_every_row_and_goes_back(backend_: str, tmp_path: Path) -> None:
    with fresh_database(backend_, tmp_path) as url:
        engine = make_engine(url)
        try:
            migrate.upgrade(engine, "0004")
            seed(engine, Scale.SMALL, seed=5)
            before = checksum(engine)
            migrate.upgrade(engine)
            assert checksum(engine) == before
            enrollment = scalar(engine, "SELECT min(enrollment_ref) FROM grades")
            with pytest.raises(sa.exc.IntegrityError):
                execute(engine, "DELETE FROM enrollments WHERE id = :id", id=enrollment)
            assert checksum(engine) == before
            migrate.downgrade(engine, "0004")
            assert checksum(engine) == before
            # Back at 0004 the delete cascades again (what 0005 stopped).
            held = scalar(
                engine, "SELECT count(*) FROM grades WHERE enrollment_ref = :e", e=enrollment
            )
            execute(engine, "DELETE FROM enrollments WHERE id = :id", id=enrollment)
            assert (
                held
                and scalar(
                    engine, "SELECT count(*) FROM grades WHERE enrollment_ref = :e", e=enrollment
                )
                == 0
            )
        finally:
            engine.dispose()


def test_undoing_imports_newest_first_restores_each_earlier_state(
    source: Engine, target: Engine
) -> None:
    fall = bundle(source, "2026-fall")
    spring = bundle(source, "2026-spring")
    students = [Batch("students", records(fall)["students"][:25])]
    changed = edited(fall, "grades", 3, score=1.5)
    steps = [
        lambda: run(target, students, entity="students"),
        lambda: run(target, spring),
        lambda: run(target, fall),
        lambda: run(target, changed, strategy="replace"),
        lambda: run(target, edited(spring, "courses", 0, title="Renamed")),
    ]
    states, ids = [checksum(target)], []
    for step in steps:
        outcome = step()
        assert outcome.status is Status.COMPLETED, outcome.errors[:3]
        ids.append(outcome.id)
        states.append(checksum(target))
    for i in reversed(range(len(ids))):
        undo_import(target, SCHOOL, ids[i])
        assert checksum(target) == states[i], f"after undoing step {i}"
