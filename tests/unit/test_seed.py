"""The demo seed (ferry.demo.seed) on SQLite and PostgreSQL, at `small` scale only.

Every database is a fresh throwaway one (see tests/conftest.py); the `bench` scale is far
too slow for unit tests and is only checked for its sizes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.db.engine import make_engine
from ferry.db.migrate import upgrade
from ferry.demo import generate
from ferry.demo import plan as layout
from ferry.demo.seed import Scale, SeedError, SeedResult, is_empty, plan_for, seed
from tests.conftest import fresh_database

ENTITIES = (
    "courses",
    "students",
    "enrollments",
    "grades",
    "attendance",
    "daily_performance",
    "highlights",
)
NATURAL_KEYS = {
    "courses": ("course_code",),
    "students": ("student_id",),
    "enrollments": ("student_ref", "course_ref"),
    "grades": ("enrollment_ref", "assessment"),
    "attendance": ("enrollment_ref", "date"),
    "daily_performance": ("enrollment_ref", "date", "category"),
    "highlights": ("student_ref", "semester", "title"),
}
VOCABULARIES = {
    ("courses", "status"): {"active", "archived"},
    ("students", "status"): {"active", "inactive", "graduated"},
    ("enrollments", "status"): {"enrolled", "dropped", "completed"},
    ("attendance", "status"): {"present", "absent", "late", "excused"},
    ("daily_performance", "category"): {"participation", "homework", "behaviour", "focus"},
    ("highlights", "kind"): {"award", "achievement", "note"},
}
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class Databases:
    """Fresh, migrated databases of one backend, dropped by `close`.

    Built on the shared `fresh_database` (a throwaway PostgreSQL database per call, skipped
    when the server is unreachable unless CI=true).
    """

    def __init__(self, backend: str, folder: Path) -> None:
        self.backend, self.folder = backend, folder
        self._stack = ExitStack()

    def new(self, *, migrate: bool = True) -> Engine:
        url = self._stack.enter_context(fresh_database(self.backend, self.folder))
        engine = make_engine(url)
        # Registered after the database, so it is disposed of before the DROP.
        self._stack.callback(engine.dispose)
        if migrate:
            upgrade(engine)
        return engine

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(params=BACKENDS)
def dbs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    made = Databases(request.param, tmp_path)
    yield made
    made.close()


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, SeedResult]]:
    """One small seed per backend, shared by the read-only tests (seeding takes a moment)."""
    made = Databases(request.param, tmp_path_factory.mktemp("seeded"))
    try:
        engine = made.new()
        yield engine, seed(engine, Scale.SMALL, seed=1)
    finally:
        made.close()


def _scalar(engine: Engine, sql: str) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar_one()


def _count(engine: Engine, sql: str) -> int:
    value = _scalar(engine, sql)
    assert isinstance(value, int)
    return value


def _dump(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    with engine.connect() as conn:
        return {
            t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY id"))]
            for t in ENTITIES
        }


def test_small_counts_match_the_database(seeded: tuple[Engine, SeedResult]) -> None:
    engine, result = seeded
    assert set(result.counts) == set(ENTITIES)
    assert result.counts["courses"] == 24
    assert result.counts["students"] == 150
    assert 500 <= result.counts["enrollments"] <= 700
    assert 3_000 <= sum(result.counts.values()) <= 8_000
    assert result.seconds > 0
    for table in ENTITIES:
        assert _count(engine, f"SELECT count(*) FROM {table}") == result.counts[table], table


def test_is_empty_and_refuses_a_non_empty_database(seeded: tuple[Engine, SeedResult]) -> None:
    engine, result = seeded
    assert not is_empty(engine)
    with pytest.raises(SeedError, match="already holds"):
        seed(engine)
    assert _count(engine, "SELECT count(*) FROM students") == result.counts["students"]


def test_refuses_a_database_with_one_student(dbs: Databases) -> None:
    engine = dbs.new()
    assert is_empty(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO students (student_id, first_name, last_name, email, year_level,"
                " status, created_at, updated_at)"
                " VALUES ('X1', 'A', 'B', '', 7, 'active', :t, :t)"
            ),
            {"t": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)},
        )
    assert not is_empty(engine)
    with pytest.raises(SeedError):
        seed(engine)


def test_same_seed_same_rows_other_seed_other_rows(dbs: Databases) -> None:
    first, second, other = dbs.new(), dbs.new(), dbs.new()
    seed(first, seed=7)
    seed(second, seed=7)
    seed(other, seed=8)
    assert _dump(first) == _dump(second)
    assert _dump(first)["students"] != _dump(other)["students"]


def test_natural_keys_are_unique(seeded: tuple[Engine, SeedResult]) -> None:
    engine, _ = seeded
    for table, key in NATURAL_KEYS.items():
        cols = ", ".join(key)
        dupes = _count(
            engine,
            f"SELECT count(*) FROM (SELECT {cols} FROM {table} "
            f"GROUP BY {cols} HAVING count(*) > 1) d",
        )
        assert dupes == 0, table
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT course_code, semester FROM courses")).all()
    assert {s for _, s in rows} == {"2025-fall", "2026-spring", "2026-fall"}
    for code, semester in rows:
        year, fall = layout.parse_semester(semester)
        assert re.fullmatch(rf"[A-Z]+\d{{3}}-{year}{'F' if fall else 'S'}", code), code


def test_vocabularies(seeded: tuple[Engine, SeedResult]) -> None:
    engine, _ = seeded
    with engine.connect() as conn:
        for (table, column), allowed in VOCABULARIES.items():
            found = set(conn.execute(sa.text(f"SELECT DISTINCT {column} FROM {table}")).scalars())
            assert found <= allowed, (table, found - allowed)
            assert len(found) >= 2, (table, column)


def test_some_rows_are_soft_deleted(seeded: tuple[Engine, SeedResult]) -> None:
    engine, result = seeded
    deleted = {t: _count(engine, f"SELECT count(deleted_at) FROM {t}") for t in ENTITIES}
    assert sum(1 for n in deleted.values() if n > 0) >= 4, deleted
    # "A few percent": deleted rows must not swamp what exports and reports show.
    assert sum(deleted.values()) < 0.06 * sum(result.counts.values())


def test_prerequisites_and_mentors(seeded: tuple[Engine, SeedResult]) -> None:
    engine, _ = seeded
    assert _count(engine, "SELECT count(prerequisite_id) FROM courses") >= 3
    # Semester names sort chronologically only within a year; compare course ids instead,
    # which the seed assigns oldest semester first.
    earlier = (
        "SELECT count(*) FROM courses c JOIN courses p ON c.prerequisite_id = p.id "
        "WHERE p.semester <> c.semester AND p.id < c.id"
    )
    assert _count(engine, earlier) >= 1
    assert _count(engine, "SELECT count(mentor_id) FROM students") >= 5
    younger = (
        "SELECT count(*) FROM students s JOIN students m ON s.mentor_id = m.id "
        "WHERE m.year_level <= s.year_level"
    )
    assert _count(engine, younger) == 0


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("grades", "comment", "=SUM(A1:A2)"),
        ("attendance", "note", "+30 min late"),
        ("highlights", "title", "@home project"),
        ("highlights", "description", "-5 points for talking during the test"),
    ],
)
def test_formula_like_strings(
    seeded: tuple[Engine, SeedResult], table: str, column: str, value: str
) -> None:
    engine, _ = seeded
    with engine.connect() as conn:
        hits = conn.execute(
            sa.text(f"SELECT count(*) FROM {table} WHERE {column} = :v"), {"v": value}
        ).scalar_one()
    assert hits > 0


def test_english_and_greek_names(seeded: tuple[Engine, SeedResult]) -> None:
    engine, _ = seeded
    with engine.connect() as conn:
        people = conn.execute(sa.text("SELECT first_name, last_name, email FROM students")).all()
    greek = re.compile(r"^[\u0386-\u03ce]+$")  # Greek letters, tonos included
    assert sum(1 for f, last, _ in people if greek.match(f) and greek.match(last)) >= 20
    assert sum(1 for f, _, _ in people if f.isascii()) >= 20
    assert all(e == "" or re.fullmatch(r"[a-z.0-9]+@[a-z.-]+", e) for _, _, e in people)


def test_values_read_back_through_sqlalchemy(seeded: tuple[Engine, SeedResult]) -> None:
    engine, _ = seeded
    from ferry.db import models as m

    with engine.connect() as conn:
        student = conn.execute(
            sa.select(m.Student).where(m.Student.date_of_birth.is_not(None)).limit(1)
        ).one()
        grade = conn.execute(sa.select(m.Grade).limit(1)).one()
        if engine.dialect.name == "sqlite":
            raw = conn.execute(sa.text("SELECT created_at, graded_on FROM grades LIMIT 1")).one()
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", raw[0])
            assert re.fullmatch(r"\d{4}-\d\d-\d\d", raw[1])
        # The same instant, found by SQLAlchemy comparing its own parameter.
        again = conn.execute(
            sa.select(sa.func.count())
            .select_from(m.Grade)
            .where(m.Grade.created_at == grade.created_at)
        ).scalar_one()
    assert isinstance(student.date_of_birth, dt.date)
    assert isinstance(student.created_at, dt.datetime)
    assert student.updated_at >= student.created_at
    assert isinstance(grade.graded_on, dt.date)
    assert again >= 1
    if engine.dialect.name == "postgresql":
        assert student.created_at.utcoffset() == dt.timedelta(0)


def test_ids_continue_after_the_seed(dbs: Databases) -> None:
    engine = dbs.new()
    result = seed(engine)
    from ferry.db import models as m

    with engine.begin() as conn:
        new_id = conn.execute(
            sa.insert(m.Course)
            .values(course_code="NEW101-2027S", semester="2027-spring", title="New")
            .returning(m.Course.id)
        ).scalar_one()
    assert new_id == result.counts["courses"] + 1


def test_a_failure_leaves_the_database_empty(
    dbs: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = dbs.new()

    def boom(self: generate.Generator) -> Iterator[layout.Row]:
        raise RuntimeError("boom")
        yield ()

    monkeypatch.setattr(generate.Generator, "highlights", boom)
    with pytest.raises(RuntimeError, match="boom"):
        seed(engine)
    assert is_empty(engine)
    assert _count(engine, "SELECT count(*) FROM grades") == 0


def test_errors_are_seed_errors(dbs: Databases) -> None:
    with pytest.raises(SeedError, match="semester"):
        seed(dbs.new(), semester="fall-2026")
    with pytest.raises(SeedError, match="migrated"):
        seed(dbs.new(migrate=False))


def test_semester_chains() -> None:
    assert layout.semester_chain("2026-fall", 3) == ("2025-fall", "2026-spring", "2026-fall")
    assert layout.semester_chain("2025-spring", 2) == ("2024-fall", "2025-spring")
    assert plan_for(Scale.SMALL, "2026-fall").semesters == (
        "2025-fall",
        "2026-spring",
        "2026-fall",
    )


def test_bench_plan_sizes() -> None:
    # The bench itself is too slow for unit tests; its sizes are plain arithmetic.
    bench = plan_for(Scale.BENCH, "2026-fall")
    enrollments = bench.students_per_semester * bench.courses_per_student
    assert bench.semesters == ("2026-fall",)
    assert bench.students == 20_000
    assert bench.courses_per_semester == 400
    assert enrollments == 100_000
    assert enrollments * bench.assessments == 300_000
    assert enrollments * bench.lesson_days == 500_000
    assert bench.highlights_per_semester == 10_000


def test_scale_accepts_plain_strings() -> None:
    assert Scale("bench") is Scale.BENCH
    assert str(Scale.SMALL) == "small"
