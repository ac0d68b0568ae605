"""Links travel on (issue 21, item 4): an installation holding a link pending (its target
is in no bundle it got) writes it in every export as the target's natural key, exactly
as it arrived. Export from A, import into B, export from B, import into C (which has the
target): the link is there in C."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.db.engine import make_engine
from ferry.merge import Status
from tests.bundle.helpers import FORMATS, decode, encode, events_of
from tests.conftest import migrated_database
from tests.merge.helpers import bundle, comparable, records, run, scalar

SEMESTERS = ["2025-fall", "2026-spring", "2026-fall"]


@contextmanager
def _database(backend: str, folder: Path) -> Iterator[Engine]:
    with migrated_database(backend, folder) as url:
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def _pending(engine: Engine) -> int:
    return int(scalar(engine, "SELECT count(*) FROM pending_links WHERE closed_by IS NULL"))


def test_a_pending_link_is_relayed_from_b_to_c(
    source: Engine, target: Engine, backend: str, tmp_path: Path
) -> None:
    fall = bundle(source, "2026-fall")
    assert run(target, fall).status is Status.COMPLETED  # B: the targets are elsewhere
    assert _pending(target) > 0
    # B's export carries every link as A's did, pending ones included.
    relayed = bundle(target, "2026-fall")
    assert comparable(relayed) == comparable(fall)
    with _database(backend, tmp_path) as c:
        for semester in SEMESTERS:  # C holds the targets: every semester but the fall
            if semester != "2026-fall":
                assert run(c, bundle(source, semester)).status is Status.COMPLETED
        out = run(c, relayed)
        assert out.status is Status.COMPLETED
        # Every link of the fall is bound in C as in A (plain SQL on both sides).
        link_sql = (
            "SELECT c.course_code, p.course_code FROM courses c JOIN courses p "
            "ON p.id = c.prerequisite_id WHERE c.semester = '2026-fall' ORDER BY 1"
        )
        with source.connect() as a_conn, c.connect() as c_conn:
            assert c_conn.exec_driver_sql(link_sql).all() == a_conn.exec_driver_sql(link_sql).all()
        assert comparable(bundle(c, "2026-fall")) == comparable(fall)


# ---- the round trip property, in every bundle format --------------------------------

STAMP = dt.datetime(2026, 9, 1, 8, 0, tzinfo=dt.UTC)


def _course(code: str, semester: str, prerequisite: str | None) -> dict[str, Any]:
    return {
        "course_code": code,
        "semester": semester,
        "title": f"Course {code}",
        "description": "",
        "credits": 5,
        "teacher": "Ms A",
        "status": "active",
        "prerequisite_code": prerequisite,
        "created_at": STAMP,
        "updated_at": STAMP,
        "deleted_at": None,
    }


def _student(sid: str, mentor: str | None) -> dict[str, Any]:
    return {
        "student_id": sid,
        "first_name": "Ada",
        "last_name": "L",
        "email": f"{sid.lower()}@example.org",
        "date_of_birth": None,
        "year_level": 9,
        "status": "active",
        "mentor_student_id": mentor,
        "created_at": STAMP,
        "updated_at": STAMP,
        "deleted_at": None,
    }


def _enrollment(sid: str, code: str) -> dict[str, Any]:
    return {
        "student_id": sid,
        "course_code": code,
        "enrolled_on": None,
        "status": "active",
        "final_score": None,
        "created_at": STAMP,
        "updated_at": STAMP,
        "deleted_at": None,
    }


# Where a link points: nowhere, inside the bundle (index), or outside it (a key that
# exists in no database of the test).
LINK = st.one_of(
    st.none(), st.integers(0, 3).map(lambda i: ("in", i)), st.text("XYZ", min_size=1, max_size=3)
)
COUNTER = itertools.count()


def _generated(draw: st.DrawFn) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    n = next(COUNTER)
    prefix = f"T{n}"
    semester = f"prop-{n}"
    n_courses = draw(st.integers(1, 4))
    n_students = draw(st.integers(1, 4))

    def target(link: Any, kind: str, count: int) -> str | None:
        if link is None:
            return None
        if isinstance(link, tuple):
            return f"{prefix}{kind}{link[1] % count}"
        return f"OUT-{prefix}-{kind}-{link}"

    courses = [
        _course(f"{prefix}C{i}", semester, target(draw(LINK), "C", n_courses))
        for i in range(n_courses)
    ]
    students = [_student(f"{prefix}S{i}", target(draw(LINK), "S", n_students))
                for i in range(n_students)]  # fmt: skip
    enrollments = [
        _enrollment(s["student_id"], courses[i % n_courses]["course_code"])
        for i, s in enumerate(students)
    ]
    return semester, {"courses": courses, "students": students, "enrollments": enrollments}


@st.composite
def generated(draw: st.DrawFn) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    return _generated(draw)


def _through(name: str, events: list[Event]) -> list[Event]:
    return decode(name, encode(name, events))


@pytest.mark.parametrize("name", FORMATS)
def test_export_import_export_keeps_every_link(
    name: str, target: Engine, backend: str, tmp_path: Path
) -> None:
    with _database(backend, tmp_path) as second:

        @settings(
            max_examples=6,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(case=generated())
        def check(case: tuple[str, dict[str, list[dict[str, Any]]]]) -> None:
            semester, recs = case
            exported = events_of(recs, semester=semester)
            out = run(target, _through(name, exported))
            assert out.status is Status.COMPLETED, out.errors[:3]
            again = bundle(target, semester)
            assert comparable(again) == comparable(exported)  # links included
            out = run(second, _through(name, again))
            assert out.status is Status.COMPLETED, out.errors[:3]
            assert comparable(bundle(second, semester)) == comparable(exported)
            assert records(bundle(second, semester)).keys() >= {"courses", "students"}

        check()


def test_an_entity_export_writes_the_pending_link(source: Engine, target: Engine) -> None:
    """Entity exports (a courses csv here) write a waiting link as its target's key too
    (they share the bundle exports' query: ferry.datasets.query.entity_columns)."""
    import csv
    import io

    from tests.imports.exported import export_file

    fall = bundle(source, "2026-fall")
    assert run(target, fall).status is Status.COMPLETED
    with target.connect() as conn:
        waiting = dict(
            conn.exec_driver_sql(
                "SELECT record_key, target_key FROM pending_links WHERE closed_by IS NULL "
                "AND entity = 'courses'"
            ).all()
        )
    assert waiting
    text = export_file(target, "courses", "csv").decode("utf-8-sig")
    rows = {r["course_code"]: r for r in csv.DictReader(io.StringIO(text))}
    for code, prerequisite in waiting.items():
        assert rows[code]["prerequisite_code"] == prerequisite
