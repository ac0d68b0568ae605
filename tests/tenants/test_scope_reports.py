"""The application scope of the reports (docs/tenants.md, the first wall), with the second
wall away: every report path runs as the SUPERUSER, which row-level security does not
bind, over two schools holding the same natural keys (both import one bundle; the second
school's grades, attendance and students are then changed so its numbers differ). Each
school's reports equal a plain-SQL oracle (tests/reports/oracle.py) of that school's rows
only; with the scope patched out the same reports mix the schools, so the scope is what
holds it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.bundle.formats.base import Event
from ferry.cache.memory import MemoryCache
from ferry.cache.report_cache import ReportCache
from ferry.db import tenant
from ferry.errors import NotFound
from ferry.merge import Status
from ferry.reports import bulk, engine, semester, student
from ferry.reports.engine import ReportEngine
from ferry.reports.semester import semester_report
from ferry.reports.settings import ReportSettings
from ferry.reports.student import Scope, search_students, student_report
from ferry.v1 import reports_pb2 as pb
from tests.merge.helpers import run
from tests.reports.oracle import Oracle
from tests.reports.test_oracle import check_semester, check_student
from tests.tenants.conftest import Tenancy

pytestmark = pytest.mark.postgres

SETTINGS = ReportSettings()
TABLES = ("courses", "students", "enrollments", "grades", "attendance", "daily_performance")
TABLES += ("highlights",)
# South's own changes, made by the superuser after both imports.
GONE = 3  # south's first live students soft-deleted


def oracle_of(conn: Connection, school: int) -> Oracle:
    """The oracle over school `school`'s rows only: each table it reads is shadowed by a
    temporary view of that school's rows (pg_temp comes first in the search path), so
    its plain SQL is untouched and knows nothing of schools."""
    for t in TABLES:
        conn.execute(
            sa.text(f"CREATE TEMP VIEW {t} AS SELECT * FROM public.{t} WHERE school_id = {school}")
        )
    try:
        return Oracle(conn)
    finally:
        for t in TABLES:
            conn.execute(sa.text(f"DROP VIEW pg_temp.{t}"))


@pytest.fixture
def two_schools(
    tenancy: Tenancy, source_events: list[Event]
) -> Iterator[tuple[Engine, dict[str, int]]]:
    """North and south each import the same bundle (through the app role); then south's
    numbers are made to differ. Yields the superuser's engine and the school ids."""
    t = tenancy
    north, south = t.schools["north"], t.schools["south"]
    for school in (north, south):
        with tenant.acting_for(school):
            assert run(t.app, source_events).status is Status.COMPLETED
    with t.platform.begin() as conn:
        p = {"s": south}
        conn.execute(sa.text("UPDATE grades SET score = score / 2 WHERE school_id = :s"), p)
        conn.execute(
            sa.text("UPDATE attendance SET status = 'absent' WHERE school_id = :s AND id % 3 = 0"),
            p,
        )
        conn.execute(
            sa.text(
                "UPDATE students SET deleted_at = CURRENT_TIMESTAMP WHERE id IN ("
                "SELECT id FROM students WHERE school_id = :s AND deleted_at IS NULL "
                "ORDER BY student_id LIMIT :n)"
            ),
            {"s": south, "n": GONE},
        )
    yield t.platform, t.schools


def test_the_superuser_sees_both_schools(two_schools: tuple[Engine, dict[str, int]]) -> None:
    """The premise: no policy binds this role, so only the application scope can wall."""
    platform, schools = two_schools
    with platform.connect() as conn:
        assert conn.execute(sa.text("SELECT rolbypassrls OR rolsuper FROM pg_roles "
                                    "WHERE rolname = current_user")).scalar_one()  # fmt: skip
        per = dict(
            conn.execute(sa.text("SELECT school_id, count(*) FROM students GROUP BY 1")).all()
        )
    assert per[schools["north"]] == per[schools["south"]] > GONE


def test_each_schools_reports_equal_its_own_oracle(
    two_schools: tuple[Engine, dict[str, int]],
) -> None:
    platform, schools = two_schools
    seen: dict[str, dict[str, float]] = {}
    for code in ("north", "south"):
        school = schools[code]
        with tenant.acting_for(school), platform.connect() as conn:
            oracle = oracle_of(conn, school)
            assert oracle.live_students and oracle.semesters
            overall = {}
            for sid in sorted(oracle.live_students):
                r = student_report(conn, SETTINGS, sid, Scope())
                check_student(r, oracle.student(sid), f"{code} {sid}")
                overall[sid] = r.overall_percent
            for sem in sorted(oracle.semesters):
                check_semester(semester_report(conn, SETTINGS, sem), oracle.semester(sem), sem)
            # The search lists this school's live students, each once.
            found = [m.student_id for m in search_students(conn, "S", 50)]
            assert found and len(set(found)) == len(found), code
            assert set(found) <= oracle.live_students, code
            seen[code] = overall
    # The schools share keys but not numbers: south's grades were halved, and its first
    # students are gone there (NOT_FOUND) while north still reports them.
    shared = set(seen["north"]) & set(seen["south"])
    assert len(seen["north"]) == len(seen["south"]) + GONE
    assert any(seen["north"][s] != seen["south"][s] for s in shared)
    gone = sorted(set(seen["north"]) - set(seen["south"]))
    with tenant.acting_for(schools["south"]), platform.connect() as conn:
        for sid in gone:
            with pytest.raises(NotFound):
                student_report(conn, SETTINGS, sid, Scope())


def test_the_cached_paths_keep_schools_apart(
    two_schools: tuple[Engine, dict[str, int]],
) -> None:
    """Through ReportEngine (cache, version stamps, bulk lists, invalidation) as the
    superuser: the same student id gives each school its own report, a class list holds
    one school's students, and an invalidation bumps one school's version."""
    platform, schools = two_schools
    reports = ReportEngine(platform, SETTINGS, ReportCache(MemoryCache(), "memory", 60))
    try:
        got: dict[str, pb.StudentReport] = {}
        for code in ("north", "south"):
            with tenant.acting_for(schools[code]), platform.connect() as conn:
                oracle = oracle_of(conn, schools[code])
                sid = sorted(oracle.live_students)[0]  # south's first live: north's 4th
                for cached in (False, True):
                    r, hit = reports.student(sid, Scope())
                    assert hit is cached
                    check_student(r, oracle.student(sid), f"{code} {sid} cached={cached}")
                got[code] = r
                sem = sorted(oracle.semesters)[0]
                s, _ = reports.semester(sem)
                check_semester(s, oracle.semester(sem), f"{code} {sem}")
                course = next(e for e in oracle.enrolments.values())
                ids, _ = bulk.students_of(
                    reports, pb.BulkStudentReportsRequest(course_code=course.course_code)
                )
                want = sorted({e.student_id for e in oracle.enrolments.values()
                               if e.course_id == course.course_id})  # fmt: skip
                assert ids == want, code
        sid = got["north"].student_id

        def versions() -> dict[int, int]:
            with platform.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT school_id, version FROM report_versions "
                        "WHERE kind = 'student' AND key = :k"
                    ),
                    {"k": sid},
                )
                return {int(s): int(v) for s, v in rows}

        before = versions()
        with tenant.acting_for(schools["north"]):
            now = reports.invalidate(sid)
        after = versions()
        assert now == before.get(schools["north"], 0) + 1 == after[schools["north"]]
        assert after.get(schools["south"]) == before.get(schools["south"])
    finally:
        reports.close()


def test_without_the_scope_the_superuser_mixes_schools(
    two_schools: tuple[Engine, dict[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attack on this file's promise: with the scope patched out of the report
    queries, the superuser's report of a key both schools hold no longer equals its
    school's oracle (so the comparisons above are held by the scope, not by chance)."""
    platform, schools = two_schools
    for module in (student, semester, bulk, engine):
        monkeypatch.setattr(module, "mine", lambda *models: [])
    student_wrong = 0
    for code in ("north", "south"):
        with tenant.acting_for(schools[code]), platform.connect() as conn:
            oracle = oracle_of(conn, schools[code])
            # A key both schools hold: its row is found in whichever school comes first,
            # so in one of the two the report is the other school's.
            sid = sorted(oracle.live_students)[0]
            try:
                check_student(
                    student_report(conn, SETTINGS, sid, Scope()), oracle.student(sid), sid
                )
            except AssertionError:
                student_wrong += 1
            # The semester's courses of both schools (same codes) are counted together.
            sem = sorted(oracle.semesters)[0]
            with pytest.raises(AssertionError):
                check_semester(semester_report(conn, SETTINGS, sem), oracle.semester(sem), sem)
    assert student_wrong >= 1
