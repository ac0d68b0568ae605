"""Data versions: what makes a cached report impossible to serve stale.

A student report's cache key carries the student's counter and a global generation; a
semester report's, the semester's counter and the generation. An import bumps the students
it touched and their classmates (a class average changed for them too), and the semesters
of the courses it touched, so a report's key is two primary-key lookups away. Every
import, undo and csv import bumps them in the SAME transaction as its changes
(`bump_for_import`, called by ferry.merge.run and ferry.merge.undo): the moment it
commits, the old keys are never asked for again, even when the cache (Redis) was down
while it ran. Invalidation is a bump: O(1), never a key scan.

A cache hit reads its stamp from the database every time (VersionReader): never from a
copy kept in this process or in Redis, either of which could miss an import committed by
another process (or while Redis was down). On PostgreSQL that read is one round trip on a
connection of the reader's own, in autocommit, with a prepared statement.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from psycopg import pq
from sqlalchemy.engine import Connection, Engine

from ferry.datasets.school import SCHOOL
from ferry.datasets.spec import Dataset
from ferry.db import tenant

log = logging.getLogger("ferry.reports")

STUDENT, SEMESTER, GENERATION = "student", "semester", "generation"

# Enrolments an import touched: changed directly, or through a grade, attendance day,
# performance mark or course of theirs. `ch` holds the import's changes as id ranges.
# The enrolment ids of the changed grades, days and marks are collected first (`te`,
# each child table read once by its id range) and joined to `enrollments` once: joining
# each child row to its enrolment cost one index lookup per row (80k+ for an import of a
# semester), which a row-level security policy's unknown selectivity made the planner
# choose (issue 26: the bump took twice as long with RLS on). Every table is scoped to
# the acting school by the application itself (`:school`), RLS or not.
_CHANGES = """
WITH ch AS (
  SELECT entity, action, row_id AS lo, COALESCE(row_id_end, row_id) AS hi
  FROM import_changes WHERE import_id = :iid AND school_id = :school
),
te AS (
  SELECT e.id AS eid FROM enrollments e
  JOIN ch ON ch.entity = 'enrollments' AND e.id BETWEEN ch.lo AND ch.hi
  WHERE e.school_id = :school
  UNION
  SELECT g.enrollment_ref FROM grades g
  JOIN ch ON ch.entity = 'grades' AND g.id BETWEEN ch.lo AND ch.hi
  WHERE g.school_id = :school
  UNION
  SELECT a.enrollment_ref FROM attendance a
  JOIN ch ON ch.entity = 'attendance' AND a.id BETWEEN ch.lo AND ch.hi
  WHERE a.school_id = :school
  UNION
  SELECT p.enrollment_ref FROM daily_performance p
  JOIN ch ON ch.entity = 'daily_performance' AND p.id BETWEEN ch.lo AND ch.hi
  WHERE p.school_id = :school
),
touched AS (
  SELECT e.student_ref AS student_ref, e.course_ref AS course_ref
  FROM enrollments e JOIN te ON e.id = te.eid WHERE e.school_id = :school
  UNION
  SELECT e.student_ref, e.course_ref FROM courses c
  JOIN ch ON ch.entity = 'courses' AND c.id BETWEEN ch.lo AND ch.hi
  JOIN enrollments e ON e.course_ref = c.id
  WHERE c.school_id = :school AND e.school_id = :school
  UNION
  SELECT s.id, e.course_ref FROM students s
  JOIN ch ON ch.entity = 'students' AND s.id BETWEEN ch.lo AND ch.hi
  JOIN enrollments e ON e.student_ref = s.id
  WHERE s.school_id = :school AND e.school_id = :school
)
"""

# The students whose reports an import changed (each select follows `_CHANGES`), by the
# key their reports are cached under: the id they have now, and for a renamed student also
# the id it had (`{old}`: its report under the old id is gone on the rename and back on the
# undo; the rows' own ids say only one side).
_STUDENTS = """
SELECT DISTINCT s.student_id AS vkey FROM (
  SELECT student_ref FROM touched
  UNION SELECT e.student_ref FROM enrollments e
    WHERE e.course_ref IN (SELECT course_ref FROM touched) AND e.school_id = :school
  UNION SELECT s.id FROM students s
    JOIN ch ON ch.entity = 'students' AND s.id BETWEEN ch.lo AND ch.hi
    AND (ch.action <> 'created' OR :created = 1)
    WHERE s.school_id = :school
  UNION SELECT h.student_ref FROM highlights h
    JOIN ch ON ch.entity = 'highlights' AND h.id BETWEEN ch.lo AND ch.hi
    WHERE h.school_id = :school
) t JOIN students s ON s.id = t.student_ref AND s.school_id = :school
UNION
SELECT {old} FROM import_changes x WHERE x.import_id = :iid AND x.school_id = :school
  AND x.entity = 'students' AND x.action = 'renamed' AND {old} IS NOT NULL
"""
_OLD_STUDENT = {
    "postgresql": "(x.old_values ->> 'student_id')",
    "sqlite": "json_extract(x.old_values, '$.student_id')",
}

# The semesters whose reports an import changed: both sides of every change. What the rows
# are now (after an import; before an undo restores them) and what they were (the old
# values the import saved: before an import; what an undo restores). A course moved from
# one semester to another bumps both, on the import and on its undo. `{old}` reads a saved
# row's semester (SQL of the dialect, _OLD_SEMESTER).
_SEMESTERS = """
SELECT DISTINCT c.semester AS vkey FROM touched t JOIN courses c ON c.id = t.course_ref
  WHERE c.school_id = :school
UNION
SELECT c.semester FROM courses c JOIN ch ON ch.entity = 'courses' AND c.id BETWEEN ch.lo AND ch.hi
  WHERE c.school_id = :school
UNION
SELECT h.semester FROM highlights h
  JOIN ch ON ch.entity = 'highlights' AND h.id BETWEEN ch.lo AND ch.hi
  WHERE h.school_id = :school
UNION
SELECT {old} FROM import_changes x WHERE x.import_id = :iid AND x.school_id = :school
  AND x.entity IN ('courses', 'highlights') AND x.action <> 'created' AND {old} IS NOT NULL
"""
_OLD_SEMESTER = {
    "postgresql": "(x.old_values ->> 'semester')",
    "sqlite": "json_extract(x.old_values, '$.semester')",
}


def _bump_selected(kind: str, select: str) -> str:
    """One statement that bumps every key `select` yields: the database does the work of
    a whole import (10,000 students are one statement, not 10,000). Sorted, so concurrent
    bumps take their row locks in one order and never deadlock; `WHERE true` is SQLite's
    rule for an INSERT ... SELECT with an ON CONFLICT clause. `kind` is one of this
    module's constants, never input."""
    return (
        _CHANGES
        + "INSERT INTO report_versions (school_id, kind, key, version) "
        + f"SELECT :school, '{kind}', b.vkey, 1 "
        + f"FROM ({select}) b WHERE true ORDER BY b.vkey "
        + "ON CONFLICT (school_id, kind, key) DO UPDATE SET version = report_versions.version + 1"
    )


_BUMP_STUDENTS = {
    dialect: _bump_selected(STUDENT, _STUDENTS.format(old=old))
    for dialect, old in _OLD_STUDENT.items()
}
_BUMP_SEMESTERS = {
    dialect: _bump_selected(SEMESTER, _SEMESTERS.format(old=old))
    for dialect, old in _OLD_SEMESTER.items()
}

_UPSERT = (
    "INSERT INTO report_versions (school_id, kind, key, version) "
    "VALUES (:school, :kind, :key, 1) "
    "ON CONFLICT (school_id, kind, key) DO UPDATE SET version = report_versions.version + 1"
)


def bump(conn: Connection, kind: str, keys: Iterable[str]) -> None:
    """Add one to the version of each key (sorted, so concurrent bumps never deadlock)."""
    school = tenant.school_id()
    rows = [{"school": school, "kind": kind, "key": k} for k in sorted(set(keys))]
    if rows:
        conn.execute(sa.text(_UPSERT), rows)


# PostgreSQL: both bumps and the touched semesters in one statement, so `touched` (every
# changed row's enrolment; the costly part, 5.7 s of a 1M-record import) is evaluated
# once: a CTE named twice is materialised. The two INSERTs touch different keys (kinds)
# and both run whether or not the final SELECT reads them; it returns the semesters for
# ListSemesters' kept counts, one row per semester with the students bumped beside it.
_BUMP_BOTH_PG = (
    _CHANGES.rstrip().removesuffix(")")
    + "),\n"
    + "sem AS ("
    + _SEMESTERS.format(old=_OLD_SEMESTER["postgresql"])
    + "),\n"
    + "bs AS (INSERT INTO report_versions (school_id, kind, key, version) "
    + f"SELECT :school, '{STUDENT}', b.vkey, 1 "
    + "FROM ("
    + _STUDENTS.format(old=_OLD_STUDENT["postgresql"])
    + ") b ORDER BY b.vkey "
    + "ON CONFLICT (school_id, kind, key) DO UPDATE SET version = report_versions.version + 1 "
    + "RETURNING 1),\n"
    + "bm AS (INSERT INTO report_versions (school_id, kind, key, version) "
    + f"SELECT :school, '{SEMESTER}', vkey, 1 FROM sem ORDER BY vkey "
    + "ON CONFLICT (school_id, kind, key) DO UPDATE SET version = report_versions.version + 1 "
    + "RETURNING 1)\n"
    + "SELECT sem.vkey, (SELECT count(*) FROM bs) FROM sem "
    + "UNION ALL SELECT NULL, (SELECT count(*) FROM bs) WHERE NOT EXISTS (SELECT 1 FROM sem)"
)


def bump_and_touched(
    conn: Connection, ds: Dataset, import_id: str, created: bool
) -> tuple[tuple[int, int], set[str] | None]:
    """bump_for_import, then touched_by: what every import, conflict resolution and undo
    does as it commits. On PostgreSQL, for the school dataset, one statement (the import's
    changes read once, not three times); the same keys are bumped and the same semesters
    returned as by the two calls, which SQLite and other datasets still make."""
    school_tables = {e.table.name for e in SCHOOL.in_order()}
    if conn.dialect.name != "postgresql" or {e.table.name for e in ds.in_order()} != (
        school_tables
    ):
        return bump_for_import(conn, import_id, created), touched_by(conn, ds, import_id)
    params = {"iid": import_id, "created": int(created), "school": tenant.school_id()}
    rows = conn.execute(sa.text(_BUMP_BOTH_PG), params).all()
    semesters = {str(r[0]) for r in rows if r[0] is not None}
    students = int(rows[0][1]) if rows else 0
    return (students, len(semesters)), semesters


def bump_for_import(conn: Connection, import_id: str, created: bool) -> tuple[int, int]:
    """Bump the students and semesters import `import_id` touched, inside the caller's
    transaction (the import's or the undo's, before the undo deletes created rows), from
    both sides: what its rows are now and what they were (the old values it saved), so a
    course moved between semesters bumps both on the import and on its undo.

    A student the import itself created (`created` False: the import) has no report in
    any cache: a report is only ever computed for a student that exists (one that does
    not is NOT_FOUND, never cached), and whatever removed an earlier student of that id
    bumped it (undo; a replace only marks it deleted). So its counter stays as it is and
    a csv of 10,000 new students bumps nothing. Its enrolments, grades and the rest are
    changes of their own and do bump. The undo (`created` True) bumps them: the reports
    cached since must go with the rows.

    Reads the import's own change log, so it needs nothing from the merge engine but the
    id; returns (students, semesters) bumped. Datasets without these tables bump nothing.
    """
    if not sa.inspect(conn).has_table("report_versions"):
        return 0, 0
    params = {"iid": import_id, "created": int(created), "school": tenant.school_id()}
    entities = {
        r[0]
        for r in conn.execute(
            sa.text(
                "SELECT DISTINCT entity FROM import_changes "
                "WHERE import_id = :iid AND school_id = :school"
            ),
            params,
        )
    }
    school = {"students", "courses", "enrollments", "grades", "attendance"}
    school |= {"daily_performance", "highlights"}
    if not entities & school:
        return 0, 0
    students = conn.execute(sa.text(_BUMP_STUDENTS[conn.dialect.name]), params).rowcount
    semesters = conn.execute(sa.text(_BUMP_SEMESTERS[conn.dialect.name]), params).rowcount
    return max(students, 0), max(semesters, 0)


def touched_semesters(conn: Connection, import_id: str) -> set[str]:
    """The semesters whose contents import `import_id` changed, from both sides as
    bump_for_import sees them (an undo asks before it takes its rows back). Kept counts
    (ferry.bundle.semesters.recount) are rewritten for exactly these."""
    select = _CHANGES + _SEMESTERS.format(old=_OLD_SEMESTER[conn.dialect.name])
    params = {"iid": import_id, "school": tenant.school_id()}
    return {str(r[0]) for r in conn.execute(sa.text(select), params)}


def touched_by(conn: Connection, ds: Dataset, import_id: str) -> set[str] | None:
    """The semesters import `import_id` changed, for ferry.bundle.semesters.recount: read
    from its change log for the school dataset's tables; None (every semester) for any
    other dataset."""
    if {e.table.name for e in ds.in_order()} == {e.table.name for e in SCHOOL.in_order()}:
        return touched_semesters(conn, import_id)
    return None


def bump_generation(conn: Connection) -> int:
    """Invalidate every cached report: a new generation."""
    bump(conn, GENERATION, [""])
    return current(conn, GENERATION, "")


def current(conn: Connection, kind: str, key: str) -> int:
    v = conn.execute(
        sa.text(
            "SELECT version FROM report_versions "
            "WHERE school_id = :school AND kind = :k AND key = :key"
        ),
        {"school": tenant.school_id(), "k": kind, "key": key},
    ).scalar()
    return int(v or 0)


# The versions a report's key carries: its student's or semester's, and the generation.
_STAMP = (
    "SELECT kind, key, version FROM report_versions WHERE school_id = :school "
    "AND ((kind = :kind AND key = :key) OR (kind = 'generation' AND key = ''))"
)
# Prepared once on each of VersionReader's own connections and run through libpq itself.
_STAMP_NAME = b"ferry_report_stamp"
_STAMP_PQ = _STAMP.replace(":kind", "$1").replace(":key", "$2").replace(":school", "$3").encode()
# The reader's own connections are autocommit: the acting school is set for the session
# (and again only when it changes), for the row-level security policies (migration 0013).
_SET_SCHOOL = b"SELECT set_config('ferry.school', $1, false)"


def stamp(conn: Connection, kind: str, key: str) -> str:
    """The versions a `kind` report (STUDENT, SEMESTER) of `key` depends on, as one
    string for its cache key: the generation and the key's own (a student's is bumped for
    classmates' changes too)."""
    params = {"kind": kind, "key": key, "school": tenant.school_id()}
    return _stamp(conn.execute(sa.text(_STAMP), params).all())


def student_stamp(conn: Connection, student_id: str) -> str:
    return stamp(conn, STUDENT, student_id)


def semester_stamp(conn: Connection, semester: str) -> str:
    return stamp(conn, SEMESTER, semester)


def _stamp(rows: Iterable[Any]) -> str:
    """The versions, after the acting school's id: a stamp (and so a cache key) of one
    school is never another's, though both have a student S000001 (docs/tenants.md)."""
    items = sorted((str(r[0]), str(r[1]), int(r[2])) for r in rows)
    versions = ";".join(f"{kind[0]}{key}={v}" for kind, key, v in items)
    return f"@{tenant.school_id()};{versions}"


class VersionReader:
    """Stamps for cache keys, read from the database on every call.

    On PostgreSQL (psycopg) it keeps up to `max_connections` connections of its own,
    taken out of the engine's pool once: autocommit, so each read is a statement of its
    own that sees every transaction committed before it started (an import committed a
    moment ago by any process included), and prepared, so a read is one round trip with
    no BEGIN, ROLLBACK or pre-ping around it. The read goes through psycopg's libpq layer
    (`pgconn.exec_prepared`, which releases the GIL while it waits) rather than a cursor:
    half the Python per read, which a cache hit of ~1 ms notices. When all are busy, or
    one fails, a read takes the engine's path instead (which also reports a database that
    is down as usual). Other databases always take the engine's path.

    What such a read costs is waking the PostgreSQL backend: ~0.03 ms back to back, but
    0.12-0.2 ms p50 on a busy 2-core machine when it has slept between calls. Measured
    there and left out: sending the read from the request deserializer (on gRPC's polling
    thread) while the call waits for a worker saves ~0.1 ms inside the handler and nothing
    end to end; spinning for the answer instead of poll() doubles it; the same read on
    two or three connections, first answer wins, cuts its p90 but not its p50.

    Measured again (issue 22, load average 9-13 on the shared 2-core machine): a hit makes
    one statement and nothing else (pg_stat_database: 0.96 transactions per hit, 0 per
    health Check; no checkout, BEGIN, set_config or ROLLBACK around it). The same server
    with this read replaced by a constant serves a hit in 1.16-1.19x its Check p50; with it,
    1.40-1.50x: the read alone is 0.17-0.25 ms of wall time there (~15 us of this process's
    CPU; the rest is waiting for the backend to be scheduled, and for this thread again).
    Sending the read from the request deserializer (its answer taken in the handler) was
    tried once more and left 1.41-1.58x. So a hit within 1.25x of Check needs this read
    under ~0.05 ms, which such a machine does not give; the data version is still read on
    every hit, never kept here (that is what makes a hit never stale).
    """

    def __init__(self, engine: Engine, max_connections: int = 4) -> None:
        self.engine = engine
        self.max_connections = max_connections
        self.fast = engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        self._idle: list[Any] = []
        self._open = 0
        self._lock = threading.Lock()
        # pgconn -> the school its session acts for (each is used by one thread at a time).
        self._schools: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        # A reader dropped without close() (a CLI run, a test) still closes what it held.
        weakref.finalize(self, _close_all, self._idle)

    def stamp(self, kind: str, key: str) -> str:
        if self.fast:
            held = self._take()
            if held is not None:
                try:
                    rows = _read_stamp(held[1].pgconn, kind, key, self._schools)
                except Exception as e:  # a dropped connection: the engine's path says more
                    self._discard(held)
                    log.info("report version read fell back: %s", type(e).__name__)
                else:
                    self._give(held)
                    return _stamp(rows)
        with self.engine.connect() as c:
            return stamp(c, kind, key)

    def _take(self) -> Any:
        """(pool fairy, psycopg connection), or None: take the engine's path."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if self._open >= self.max_connections:
                return None
            self._open += 1
        fairy: Any = None
        try:
            fairy = self.engine.raw_connection()
            conn: Any = fairy.driver_connection
            fairy.detach()  # ours now: the pool neither resets, recycles nor counts it
            conn.rollback()  # the pool's pre-ping may have begun a transaction
            conn.autocommit = True
            prepared = conn.pgconn.prepare(_STAMP_NAME, _STAMP_PQ)
            if prepared.status != pq.ExecStatus.COMMAND_OK:
                raise RuntimeError(prepared.error_message.decode(errors="replace"))
            return fairy, conn
        except Exception as e:
            if fairy is not None:
                with contextlib.suppress(Exception):  # already broken
                    fairy.close()
            with self._lock:
                self._open -= 1
            log.info("report version reader: no connection of its own: %s", type(e).__name__)
            return None

    def _give(self, held: Any) -> None:
        with self._lock:
            self._idle.append(held)

    def _discard(self, held: Any) -> None:
        with self._lock:
            self._open -= 1
        _close(held)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        _close_all(idle)


def _read_stamp(
    pgconn: Any, kind: str, key: str, schools: weakref.WeakKeyDictionary[Any, str]
) -> list[tuple[str, str, int]]:
    school = str(tenant.school_id())
    if schools.get(pgconn) != school:
        res = pgconn.exec_params(_SET_SCHOOL, [school.encode()])
        if res.status != pq.ExecStatus.TUPLES_OK:
            raise RuntimeError(res.error_message.decode(errors="replace"))
        schools[pgconn] = school
    res = pgconn.exec_prepared(_STAMP_NAME, [kind.encode(), key.encode(), school.encode()])
    if res.status != pq.ExecStatus.TUPLES_OK:
        raise RuntimeError(res.error_message.decode(errors="replace"))
    return [
        (res.get_value(i, 0).decode(), res.get_value(i, 1).decode(), int(res.get_value(i, 2)))
        for i in range(res.ntuples)
    ]


def _close_all(held: list[Any]) -> None:
    for h in list(held):
        _close(h)


def _close(held: Any) -> None:
    with contextlib.suppress(Exception):  # already broken
        held[0].close()  # detached: closes the connection itself
