"""Fill an empty school database with realistic, deterministic demo data.

`small` gives three semesters and a few thousand records for trying Ferry out; `bench`
gives one semester of about a million records for measuring exports and merges. The same
seed number always gives the same rows (one `random.Random`, dates derived from the
semester names, never from the clock).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.semesters import recount
from ferry.datasets.school import SCHOOL
from ferry.db import models as m
from ferry.demo.generate import Generator
from ferry.demo.plan import ENROLLMENT_TABLES, Plan, semester_chain
from ferry.demo.sink import PostgresSink, Sink, SqliteSink

DEFAULT_SEMESTER = "2026-fall"
# Enrollments per batch: big enough that a COPY's start-up cost is noise, small enough
# that a batch (about ten rows per enrollment) stays a few MB.
BATCH = 5_000


class Scale(StrEnum):
    """How much data to create."""

    SMALL = "small"
    MEDIUM = "medium"
    BENCH = "bench"
    LARGE = "large"


@dataclass(frozen=True)
class SeedResult:
    """Rows written per entity (courses, students, ...) and the wall time taken."""

    counts: dict[str, int]
    seconds: float


class SeedError(Exception):
    """The database cannot be seeded (not empty, not migrated, unsupported backend...)."""


def plan_for(scale: Scale, semester: str) -> Plan:
    """The sizes of `scale`; `semester` is the newest semester generated."""
    if scale is Scale.BENCH:
        # 20k students x 5 courses = 100k enrollments; x3 grades, x5 attendance, x1 mark.
        return Plan(
            semesters=semester_chain(semester, 1),
            students=20_000,
            courses_per_semester=400,
            students_per_semester=20_000,
            courses_per_student=5,
            highlights_per_semester=10_000,
        )
    if scale is Scale.LARGE:
        # Ten semesters of the bench shape (~10M records): how cost grows with the data
        # (`python -m bench --scale large`). Students are shared between semesters.
        return Plan(
            semesters=semester_chain(semester, 10),
            students=60_000,
            courses_per_semester=400,
            students_per_semester=20_000,
            courses_per_student=5,
            highlights_per_semester=10_000,
        )
    if scale is Scale.MEDIUM:
        # One semester of ~100k records: big enough that a stream is still in flight
        # when something dies (system tests), small enough to seed in seconds.
        return Plan(
            semesters=semester_chain(semester, 1),
            students=2_000,
            courses_per_semester=40,
            students_per_semester=2_000,
            courses_per_student=5,
            highlights_per_semester=1_000,
        )
    # ~600 enrollments over three semesters: about 6,000 records in all.
    return Plan(
        semesters=semester_chain(semester, 3),
        students=150,
        courses_per_semester=8,
        students_per_semester=67,
        courses_per_student=3,
        highlights_per_semester=30,
    )


def is_empty(engine: Engine) -> bool:
    """True when the database holds no courses and no students."""
    with engine.connect() as conn:
        for table in (m.Course.__table__, m.Student.__table__):
            query = sa.select(sa.literal(1)).select_from(table).limit(1)
            if conn.execute(query).first() is not None:
                return False
    return True


def _sink(engine: Engine, driver_conn: Any) -> Sink:
    name, driver = engine.dialect.name, engine.dialect.driver
    if name == "postgresql" and driver == "psycopg":
        return PostgresSink(driver_conn)
    if name == "sqlite" and driver == "pysqlite":
        return SqliteSink(driver_conn)
    raise SeedError(f"cannot seed {name}+{driver}: only postgresql+psycopg and sqlite")


def seed(
    engine: Engine, scale: Scale = Scale.SMALL, seed: int = 1, semester: str | None = None
) -> SeedResult:
    """Fill the empty, migrated database behind `engine` with demo data.

    `seed` picks the data (same number, same rows); `semester` is the newest semester
    created (default 2026-fall; `small` adds the two before it). Everything is written in
    one transaction, so a failure leaves the database empty. Raises SeedError when the
    database already holds courses or students, or cannot be read.
    """
    started = time.perf_counter()
    try:
        plan = plan_for(Scale(scale), semester or DEFAULT_SEMESTER)
    except ValueError as exc:
        raise SeedError(str(exc)) from exc
    try:
        empty = is_empty(engine)
    except sa.exc.DBAPIError as exc:
        raise SeedError(
            f"cannot read the database ({exc.orig}); is the schema migrated (ferry db upgrade)?"
        ) from exc
    if not empty:
        raise SeedError(
            "refusing to seed: the database already holds courses or students; "
            "seed only an empty database"
        )

    with engine.connect() as conn:
        try:
            # Begun through SQLAlchemy, so the transaction the sink writes in on the driver
            # connection acts for the acting school (ferry.db.engine: `ferry.school`).
            conn.begin()
            sink = _sink(engine, conn.connection.driver_connection)
            gen = Generator(plan, seed, sink.formats)
            # Parents before children: each write's foreign keys point at rows already written.
            sink.write("courses", gen.courses())
            sink.write("students", gen.students())
            for batch in gen.enrollment_batches(BATCH):
                for table in ENROLLMENT_TABLES:
                    sink.write(table, batch[table])
            sink.write("highlights", gen.highlights())
            sink.finish()
            # ListSemesters' counts, in the same transaction as the rows they count (a
            # database at a schema before 0010 has none: that migration counts what it finds).
            if sa.inspect(conn).has_table("scope_counts"):
                recount(conn, SCHOOL, None)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return SeedResult(counts=dict(gen.counts), seconds=time.perf_counter() - started)
