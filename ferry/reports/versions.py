"""Data versions: what makes a cached report impossible to serve stale.

A student report's cache key carries the student's counter and a global generation; a
semester report's, the semester's counter and the generation. An import bumps the students
it touched and their classmates (a class average changed for them too), and the semesters
of the courses it touched, so a report's key is two primary-key lookups away. Every
import, undo and csv import bumps them in the SAME transaction as its changes
(`bump_for_import`, called by ferry.merge.run and ferry.merge.undo): the moment it
commits, the old keys are never asked for again, even when the cache (Redis) was down
while it ran. Invalidation is a bump: O(1), never a key scan.

Where a cache hit gets its stamp (VersionReader; `reports.versions`):

- `read` (and always on SQLite): from the database, every time: one round trip on a
  connection of the reader's own, in autocommit, with a prepared statement.
- `auto` on PostgreSQL: from this process's memory (Listener), kept fresh by
  notifications and a lease; a stamp not held there is read as above and remembered.

Never stale, with memory (issue 22). The promise: once a change (import, csv import,
undo, backup restore, conflict resolution, InvalidateCache) has returned to its caller,
no reports process answers from stamps of before it, with Redis down and with any number
of processes. How:

1. Every bump also runs `pg_notify(CHANNEL, '')` in the change's transaction: delivered
   to every listening connection if and only if it commits, in commit order.
2. After its commit, before returning, the change calls settle(): it takes a number
   s = nextval('report_change_seq') (after its commit, so any notification carrying a
   number >= s committed after the change did), notifies it, then waits until no row of
   report_listeners has seen_seq < s, deleting on the way the rows whose lease_until <=
   now() (the database's clock).
3. A process's Listener thread LISTENs on a connection of its own, then registers its row
   (seen_seq = the sequence's current value, lease_until = now() + L) and only after that
   statement returned drops its stamps. On every batch of notifications it drops its
   stamps (`epoch` + 1) before writing seen_seq = the largest number among them. It renews
   the lease (now() + L, by the database) every L/3; its hit path uses its stamps only
   while time.monotonic() < t0 + L - margin, t0 read BEFORE the renewing statement was
   sent, so the local deadline always falls before lease_until. A renewal that finds its
   row deleted registers again (dropping everything).
4. A stamp read from the database is remembered only if no notification was applied
   since before that read started (`epoch` unchanged), so nothing remembered predates a
   commit whose notification was already applied.

Why: when settle(s) returns, every row it saw has either acknowledged s or been deleted
with its lease over; a row it did not see was registered after its last look.
- Acknowledged by a notification: the listener applied a number >= s, which committed
  after the change; if it was listening when the change committed, the change's own
  notification came first (commit order) and its stamps were dropped after the commit.
  If it was not, it registered later, and dropped its stamps after that.
- Acknowledged by registering (seen_seq = the sequence's value >= s): s was taken before
  the registering statement, so the change had committed before it; the stamps were
  dropped after it returned.
- By 4, nothing remembered after a drop was read before it. So the stamps a process
  holds once it acknowledged s are all read after the change committed.
- Deleted: the lease ended (database clock) before settle returned, so that process's
  local deadline had passed: it uses no stamp until a renewal succeeds, and its next
  renewal finds no row and registers again (dropping everything). Row locks order the
  DELETE against a renewal: a renewal committed first makes the DELETE's re-check keep
  the row (read committed); one committed after finds nothing.
A listener whose connection is cut, or whose thread stalls, stops renewing: within L its
hits read the database, and a change waits for it at most L. A killed process leaves a
row that costs one change at most L (it is deleted then). Only clock rates matter (the
local deadline is t0 + L - margin, measured with time.monotonic), not clock offsets.
Not covered: a bump written outside these functions (a hand-written UPDATE of
report_versions) is not announced; a restore of the whole database under the processes
(pg_restore) neither. LISTEN needs a session: behind a pooler in transaction mode a
listener renews its lease but hears nothing, and every change then waits 3L (settle's cap:
after 2L + 1 s it deletes the rows that never answered and waits one more lease, which
ends their stamps); still never stale, but set `versions: read` there.

With no listener anywhere, settle() costs one statement after the commit (two round
trips); with live listeners, as long as the slowest takes to answer (a few milliseconds).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
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


# --- telling the processes that keep versions in memory (Listener) -------------------

CHANNEL = "ferry_reports"
_CHANGED = "ferry.reports.versions_changed"  # in Connection.info: bumped, not yet settled


def _announce(conn: Connection) -> None:
    """After a bump, in its transaction: a notification every listening process gets
    when (and only if) the transaction commits, in commit order. Its payload is empty;
    any notification drops a listener's versions (settle's, after the commit, carries the
    sequence value that listeners acknowledge)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_notify(:ch, '')"), {"ch": CHANNEL})
        conn.info[_CHANGED] = True


def changed(conn: Connection) -> bool:
    """Whether `conn`'s transaction bumped versions since the last call (call it right
    after the commit, then hand the answer to settle() once the connection is done)."""
    return bool(conn.info.pop(_CHANGED, False))


# After the commit: a change number taken after it (so larger than that of any settle
# whose commit came before), announced on the channel. A listener that has applied it
# has applied every notification committed before it (delivered in commit order).
_TICK = "SELECT v, pg_notify(:ch, v::text) FROM (SELECT nextval('report_change_seq') AS v) s"
# Drops the listeners whose lease ran out (the database's clock) before seeing `s`; the
# ones left that have not seen it, and the longest lease among them. Row locks order this
# against a listener's renewal: a renewal that commits first is seen by the DELETE's
# re-check (the row stays), one that comes after finds the row gone and starts over.
_LAGGING = (
    "WITH gone AS (DELETE FROM report_listeners WHERE seen_seq < :s AND lease_until <= now() "
    "RETURNING id) "
    "SELECT count(*), max(lease_seconds) FROM report_listeners "
    "WHERE seen_seq < :s AND id NOT IN (SELECT id FROM gone)"
)
_FALLBACK_WAIT = 2.0  # the default lease: when the listeners cannot be asked at all


def settle(engine: Engine, was_changed: bool) -> float:
    """Called by every change after its commit, before it returns to its caller (the
    merge engine's import, conflict resolution and undo, InvalidateCache): waits until
    every reports process that keeps versions in memory has dropped the ones from before
    the commit, or its lease ran out (a dead or cut-off process: at most its lease). No
    listener: one statement. Never raises (the change is committed); returns the seconds
    it waited."""
    if not was_changed or engine.dialect.name != "postgresql":
        return 0.0
    started = time.monotonic()
    try:
        _settle(engine, started)
    except Exception as e:  # the database went away after the commit
        log.warning("report versions: could not ask the listeners (%s); waiting", e)
        time.sleep(max(0.0, _FALLBACK_WAIT - (time.monotonic() - started)))
    return time.monotonic() - started


def _settle(engine: Engine, started: float) -> None:
    with engine.connect() as conn:
        seq = conn.execute(sa.text(_TICK), {"ch": CHANNEL}).scalar_one()
        conn.commit()
        pause, cap = 0.0005, None
        while True:
            count, lease = conn.execute(sa.text(_LAGGING), {"s": seq}).one()
            conn.commit()
            if not count:
                return
            lease = float(lease or _FALLBACK_WAIT)
            # A live listener answers within milliseconds; one that renews its lease but
            # never answers is a bug: past two leases its row goes, and then its lease
            # (which a renewal that raced the delete may have just extended) runs out.
            cap = cap or started + 2 * lease + 1.0
            if time.monotonic() > cap:
                conn.execute(
                    sa.text("DELETE FROM report_listeners WHERE seen_seq < :s"), {"s": seq}
                )
                conn.commit()
                log.warning("report versions: %s listener(s) never answered; dropped", count)
                time.sleep(lease)
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.02)


def bump(conn: Connection, kind: str, keys: Iterable[str]) -> None:
    """Add one to the version of each key (sorted, so concurrent bumps never deadlock)."""
    school = tenant.school_id()
    rows = [{"school": school, "kind": kind, "key": k} for k in sorted(set(keys))]
    if rows:
        conn.execute(sa.text(_UPSERT), rows)
        _announce(conn)


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
    if students or semesters:
        _announce(conn)
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
    _announce(conn)
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


_REGISTER = (
    "INSERT INTO report_listeners (id, lease_until, lease_seconds, seen_seq) "
    "SELECT %(id)s, now() + make_interval(secs => %(lease)s), %(lease)s, "
    "CASE WHEN is_called THEN last_value ELSE 0 END FROM report_change_seq "
    "ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until, "
    "lease_seconds = excluded.lease_seconds, seen_seq = excluded.seen_seq "
    "RETURNING seen_seq"
)
_RENEW = (
    "UPDATE report_listeners SET lease_until = now() + make_interval(secs => %(lease)s), "
    "seen_seq = GREATEST(seen_seq, %(seen)s) WHERE id = %(id)s RETURNING seen_seq"
)
# Rows of processes long gone (any expired row may go: see settle).
_FORGET_DEAD = "DELETE FROM report_listeners WHERE lease_until < now() - interval '1 minute'"


class Listener:
    """The stamps this process has read, kept while nothing changed: dropped on every
    notification of CHANNEL, used only under a live lease (see the module's docstring
    for why that is never stale). One thread, on a connection of its own (LISTEN), that
    keeps its row of report_listeners: renews the lease every third of it and writes the
    last change it applied. Started by the first read."""

    MAX_ENTRIES = 200_000

    def __init__(self, connect: Any, lease_seconds: float) -> None:
        self._connect = connect  # () -> (closeable, psycopg connection)
        self.lease = lease_seconds
        self.margin = max(0.05, lease_seconds / 10)
        self.valid_until = 0.0  # time.monotonic(): the stamps are usable before this
        self.epoch = 0  # + 1 on every drop
        self.stamps: dict[tuple[int, str, str], str] = {}
        self.applied = 0  # the last change number applied
        self.id = f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._renewed = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the hit path ------------------------------------------------------------------

    def get(self, k: tuple[int, str, str]) -> str | None:
        if self._thread is None:
            self.start()
        if time.monotonic() < self.valid_until:
            return self.stamps.get(k)
        return None

    def remember(self, k: tuple[int, str, str], stamp: str, epoch: int) -> None:
        """Keep a stamp read from the database by a read that started after `epoch` was
        taken, unless a notification came in since (the read may predate its commit)."""
        with self._lock:
            if self.epoch == epoch:
                if len(self.stamps) >= self.MAX_ENTRIES:
                    self.stamps = {}
                self.stamps[k] = stamp

    # --- the thread --------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name="report-versions-listener", daemon=True
            )
        self._thread.start()

    def stop(self, wait: float = 1.0) -> None:
        self._stop.set()
        self.valid_until = 0.0
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(wait)

    @property
    def healthy(self) -> bool:
        return time.monotonic() < self.valid_until

    def _drop(self, applied: int | None = None) -> None:
        with self._lock:
            self.stamps = {}
            self.epoch += 1
            if applied is not None:
                self.applied = max(self.applied, applied)

    def _run(self) -> None:
        backoff = 0.05
        while not self._stop.is_set():
            held: Any = None
            try:
                held = self._connect()
                conn = held[1]
                conn.execute(f"LISTEN {CHANNEL}")
                self._register(conn)
                backoff = 0.05
                while not self._stop.is_set():
                    due = self._renewed + self.lease / 3
                    wait = min(max(0.0, due - time.monotonic()), 0.25)
                    got = list(conn.notifies(timeout=wait, stop_after=1))
                    seqs: list[int] = []
                    if got:
                        got += list(conn.notifies(timeout=0))
                        seqs = [int(n.payload) for n in got if n.payload.isdigit()]
                        self._drop(max(seqs) if seqs else None)
                    if seqs or time.monotonic() >= due:
                        self._renew(conn)  # the acknowledgement, and the lease
                with contextlib.suppress(Exception):
                    conn.execute("DELETE FROM report_listeners WHERE id = %s", (self.id,))
            except Exception as e:
                self.valid_until = 0.0
                log.info("report versions listener: %s: %s", type(e).__name__, e)
            finally:
                self.valid_until = 0.0
                if held is not None:
                    with contextlib.suppress(Exception):
                        held[0].close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.lease)

    def _register(self, conn: Any) -> None:
        """A fresh start: a row whose seen_seq is the change number now, and no stamps
        (dropped after that number was read, so none comes from before its commit)."""
        self.valid_until = 0.0
        with contextlib.suppress(Exception):
            conn.execute(_FORGET_DEAD)
        t0 = time.monotonic()
        row = conn.execute(_REGISTER, {"id": self.id, "lease": self.lease}).fetchone()
        self._drop(int(row[0]))
        self._renewed = t0
        self.valid_until = t0 + self.lease - self.margin

    def _renew(self, conn: Any) -> None:
        t0 = time.monotonic()  # before the database sets lease_until = now() + lease
        params = {"id": self.id, "lease": self.lease, "seen": self.applied}
        if conn.execute(_RENEW, params).fetchone() is None:
            # A change found our lease run out and dropped the row: it returned without
            # us, so every stamp here may be stale. Start over.
            log.info("report versions listener: lease lost; starting over")
            self._register(conn)
            return
        self._renewed = t0
        self.valid_until = t0 + self.lease - self.margin


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
    health Check). The same server with this read replaced by a constant serves a hit in
    1.16-1.19x its Check p50; with it, 1.40-1.50x: the read alone is 0.17-0.25 ms of wall
    time there, mostly waiting for the backend to be scheduled. Hence the Listener (the
    module's docstring): with `listen`, a hit takes its stamp from memory, and reads the
    database only for a stamp it does not hold or when its lease is not live.
    """

    def __init__(
        self,
        engine: Engine,
        max_connections: int = 4,
        *,
        listen: bool = False,
        lease_seconds: float = 2.0,
        listen_engine: Engine | None = None,
    ) -> None:
        self.engine = engine
        self.max_connections = max_connections
        self.fast = engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
        # Stamps kept in memory (Listener), on PostgreSQL only; its connection from
        # `listen_engine` (the same database; a test routes it through a proxy).
        self.listener: Listener | None = None
        if listen and self.fast:
            self.listener = Listener(
                lambda: _own_connection(listen_engine or engine), lease_seconds
            )
        self._idle: list[Any] = []
        self._open = 0
        self._lock = threading.Lock()
        # pgconn -> the school its session acts for (each is used by one thread at a time).
        self._schools: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        # A reader dropped without close() (a CLI run, a test) still closes what it held.
        weakref.finalize(self, _close_all, self._idle, self.listener)

    def stamp(self, kind: str, key: str) -> str:
        listener = self.listener
        if listener is None:
            return self.read(kind, key)
        k = (tenant.school_id(), kind, key)
        found = listener.get(k)
        if found is not None:
            return found
        epoch = listener.epoch  # before the read: see Listener.remember
        found = self.read(kind, key)
        listener.remember(k, found, epoch)
        return found

    def read(self, kind: str, key: str) -> str:
        """The stamp, read from the database now."""
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
        if self.listener is not None:
            self.listener.stop()
        with self._lock:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        _close_all(idle)


def _own_connection(engine: Engine) -> tuple[Any, Any]:
    """(detached pool fairy, psycopg connection in autocommit): a connection for a
    listener alone, which the pool neither resets nor recycles."""
    fairy = engine.raw_connection()
    try:
        conn: Any = fairy.driver_connection
        fairy.detach()
        conn.rollback()
        conn.autocommit = True
        return fairy, conn
    except Exception:
        with contextlib.suppress(Exception):
            fairy.close()
        raise


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


def _close_all(held: list[Any], listener: Listener | None = None) -> None:
    if listener is not None:
        listener.stop(wait=0)
    for h in list(held):
        _close(h)


def _close(held: Any) -> None:
    with contextlib.suppress(Exception):  # already broken
        held[0].close()  # detached: closes the connection itself
