"""Data versions: what makes a cached report impossible to serve stale.

A student report's cache key carries the student's counter and a global generation; a
semester report's, the semester's counter and the generation. An import bumps the students
it touched and their classmates (a class average changed for them too), and the semesters
of the courses it touched, so a report's key is two primary-key lookups away. Every
import, undo and csv import bumps them in the SAME transaction as its changes
(`bump_for_import`, called by ferry.merge.run and ferry.merge.undo): the moment it
commits, the old keys are never asked for again, even when the cache (Redis) was down
while it ran. Invalidation is a bump: O(1), never a key scan.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

STUDENT, SEMESTER, GENERATION = "student", "semester", "generation"

# Enrolments an import touched: changed directly, or through a grade, attendance day,
# performance mark or course of theirs. `ch` holds the import's changes as id ranges.
_CHANGES = """
WITH ch AS (
  SELECT entity, row_id AS lo, COALESCE(row_id_end, row_id) AS hi
  FROM import_changes WHERE import_id = :iid
),
touched AS (
  SELECT e.student_ref AS student_ref, e.course_ref AS course_ref
  FROM enrollments e JOIN ch ON ch.entity = 'enrollments' AND e.id BETWEEN ch.lo AND ch.hi
  UNION
  SELECT e.student_ref, e.course_ref FROM grades g
  JOIN ch ON ch.entity = 'grades' AND g.id BETWEEN ch.lo AND ch.hi
  JOIN enrollments e ON e.id = g.enrollment_ref
  UNION
  SELECT e.student_ref, e.course_ref FROM attendance a
  JOIN ch ON ch.entity = 'attendance' AND a.id BETWEEN ch.lo AND ch.hi
  JOIN enrollments e ON e.id = a.enrollment_ref
  UNION
  SELECT e.student_ref, e.course_ref FROM daily_performance p
  JOIN ch ON ch.entity = 'daily_performance' AND p.id BETWEEN ch.lo AND ch.hi
  JOIN enrollments e ON e.id = p.enrollment_ref
  UNION
  SELECT e.student_ref, e.course_ref FROM courses c
  JOIN ch ON ch.entity = 'courses' AND c.id BETWEEN ch.lo AND ch.hi
  JOIN enrollments e ON e.course_ref = c.id
  UNION
  SELECT s.id, e.course_ref FROM students s
  JOIN ch ON ch.entity = 'students' AND s.id BETWEEN ch.lo AND ch.hi
  JOIN enrollments e ON e.student_ref = s.id
)
"""

_STUDENTS = (
    _CHANGES
    + """
SELECT DISTINCT s.student_id FROM (
  SELECT student_ref FROM touched
  UNION SELECT e.student_ref FROM enrollments e
    WHERE e.course_ref IN (SELECT course_ref FROM touched)
  UNION SELECT s.id FROM students s
    JOIN ch ON ch.entity = 'students' AND s.id BETWEEN ch.lo AND ch.hi
  UNION SELECT h.student_ref FROM highlights h
    JOIN ch ON ch.entity = 'highlights' AND h.id BETWEEN ch.lo AND ch.hi
) t JOIN students s ON s.id = t.student_ref
"""
)

_SEMESTERS = (
    _CHANGES
    + """
SELECT DISTINCT c.semester FROM touched t JOIN courses c ON c.id = t.course_ref
UNION
SELECT c.semester FROM courses c JOIN ch ON ch.entity = 'courses' AND c.id BETWEEN ch.lo AND ch.hi
UNION
SELECT h.semester FROM highlights h
  JOIN ch ON ch.entity = 'highlights' AND h.id BETWEEN ch.lo AND ch.hi
"""
)

_UPSERT = (
    "INSERT INTO report_versions (kind, key, version) VALUES (:kind, :key, 1) "
    "ON CONFLICT (kind, key) DO UPDATE SET version = report_versions.version + 1"
)


def bump(conn: Connection, kind: str, keys: Iterable[str]) -> None:
    """Add one to the version of each key (sorted, so concurrent bumps never deadlock)."""
    rows = [{"kind": kind, "key": k} for k in sorted(set(keys))]
    if rows:
        conn.execute(sa.text(_UPSERT), rows)


def bump_for_import(conn: Connection, import_id: str) -> tuple[int, int]:
    """Bump the students and semesters import `import_id` touched, inside the caller's
    transaction (the import's or the undo's, before the undo deletes created rows).

    Reads the import's own change log, so it needs nothing from the merge engine but the
    id; returns (students, semesters) bumped. Datasets without these tables bump nothing.
    """
    if not sa.inspect(conn).has_table("report_versions"):
        return 0, 0
    params = {"iid": import_id}
    entities = {
        r[0]
        for r in conn.execute(
            sa.text("SELECT DISTINCT entity FROM import_changes WHERE import_id = :iid"), params
        )
    }
    school = {"students", "courses", "enrollments", "grades", "attendance"}
    school |= {"daily_performance", "highlights"}
    if not entities & school:
        return 0, 0
    students = [r[0] for r in conn.execute(sa.text(_STUDENTS), params)]
    semesters = [r[0] for r in conn.execute(sa.text(_SEMESTERS), params)]
    bump(conn, STUDENT, students)
    bump(conn, SEMESTER, semesters)
    return len(students), len(semesters)


def bump_generation(conn: Connection) -> int:
    """Invalidate every cached report: a new generation."""
    bump(conn, GENERATION, [""])
    return current(conn, GENERATION, "")


def current(conn: Connection, kind: str, key: str) -> int:
    v = conn.execute(
        sa.text("SELECT version FROM report_versions WHERE kind = :k AND key = :key"),
        {"k": kind, "key": key},
    ).scalar()
    return int(v or 0)


_STUDENT_KEY = """
SELECT kind, key, version FROM report_versions
WHERE (kind = 'student' AND key = :sid) OR (kind = 'generation' AND key = '')
"""


def student_stamp(conn: Connection, student_id: str) -> str:
    """The versions a student's report depends on, as one string for its cache key: the
    generation and the student's (bumped for classmates' changes too)."""
    rows = conn.execute(sa.text(_STUDENT_KEY), {"sid": student_id}).all()
    return _stamp(rows)


def semester_stamp(conn: Connection, semester: str) -> str:
    rows = conn.execute(
        sa.text(
            "SELECT kind, key, version FROM report_versions "
            "WHERE (kind = 'semester' AND key = :s) OR (kind = 'generation' AND key = '')"
        ),
        {"s": semester},
    ).all()
    return _stamp(rows)


def _stamp(rows: Iterable[Any]) -> str:
    items = sorted((str(r[0]), str(r[1]), int(r[2])) for r in rows)
    return ";".join(f"{kind[0]}{key}={v}" for kind, key, v in items)
